#!/usr/bin/env bash
# Install the tools the deployment tests use when they are missing: Debian's
# `prometheus` (with `promtool`), `docker-compose` (its `config` command
# validates docker-compose.yml without a Docker engine) and `chromium` with
# `chromium-driver` (the dashboard's browser tests). Idempotent: a tool
# already on PATH is left alone. Tests skip with a reason when a tool is absent,
# so a failure here is reported and does not stop `make test`.
#
#   deploy/prometheus/install.sh            # all three
#   deploy/prometheus/install.sh prometheus # only one of them
set -uo pipefail

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(prometheus docker-compose chromium)

missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus) ;;
    docker-compose) command -v docker-compose >/dev/null || missing+=(docker-compose) ;;
    chromium) command -v chromium >/dev/null && command -v chromedriver >/dev/null || missing+=(chromium chromium-driver) ;;
    *) echo "install.sh: unknown tool '$pkg' (prometheus, docker-compose, chromium)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "install.sh: ${missing[*]} not installed and no apt-get here: install them by hand;" \
       "the tests that need them will skip" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "install.sh: ${missing[*]} not installed and not root (nor passwordless sudo): run" \
         "'sudo apt-get install -y --no-install-recommends ${missing[*]}'; the tests that need them will skip" >&2
    exit 0
  fi
fi
# The Debian package starts a system Prometheus on :9090 under systemd; where there is
# no init system (containers, CI) nothing starts. The tests run their own on a free port.
# Another apt-get (an unattended upgrade, a second install) may hold dpkg's lock: wait for it.
lock=(-o DPkg::Lock::Timeout=300)
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y --no-install-recommends "${missing[@]}" \
    >/tmp/streamrec-install-$$.log 2>&1; then
  # A stale package list is the usual cause: refresh it once and retry.
  "${sudo[@]}" apt-get "${lock[@]}" update -qq >>/tmp/streamrec-install-$$.log 2>&1 || true
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y --no-install-recommends "${missing[@]}" \
      >>/tmp/streamrec-install-$$.log 2>&1; then
    echo "install.sh: apt-get install ${missing[*]} failed (log: /tmp/streamrec-install-$$.log);" \
         "the tests that need them will skip" >&2
    exit 0
  fi
fi
rm -f /tmp/streamrec-install-$$.log
echo "install.sh: installed ${missing[*]}"
