#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft: broker + controller) without Docker.
#
#   deploy/kafka/kafka.sh install | start | stop | status | restart | logs | clean
#
# Jars come from Maven Central (pom.xml beside this script) into a cache outside
# the clone; the broker runs on this machine's Java 17+. Every verb is idempotent.
# Settings (environment):
#   STREAMREC_KAFKA_VERSION        Kafka version to resolve            (4.4.0)
#   STREAMREC_KAFKA_PORT           client port on 127.0.0.1             (9092)
#   STREAMREC_KAFKA_CONTROLLER_PORT controller port on 127.0.0.1        (port + 1)
#   STREAMREC_KAFKA_CACHE          where jars are kept      (~/.cache/streamrec)
#   STREAMREC_KAFKA_DATA_DIR       this broker's data, logs and pid
#                                  (~/.cache/streamrec/broker-<port>)
#   STREAMREC_KAFKA_HEAP           JVM heap                             (1g)
#   STREAMREC_KAFKA_READY_TIMEOUT  seconds to wait for start-up          (90)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${STREAMREC_KAFKA_VERSION:-4.4.0}"
port="${STREAMREC_KAFKA_PORT:-9092}"
controller_port="${STREAMREC_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
cache="${STREAMREC_KAFKA_CACHE:-$HOME/.cache/streamrec}"
home="$cache/kafka-$version"
libs="$home/libs"
data="${STREAMREC_KAFKA_DATA_DIR:-$cache/broker-$port}"
heap="${STREAMREC_KAFKA_HEAP:-1g}"
ready_timeout="${STREAMREC_KAFKA_READY_TIMEOUT:-90}"
pidfile="$data/broker.pid"
logfile="$data/logs/server.log"
config="$data/server.properties"

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*"; }

require_java() {
  command -v java >/dev/null 2>&1 || die "Java 17 or newer is required and 'java' is not on PATH (Debian: apt-get install openjdk-17-jre-headless)."
  local v major
  v="$(java -version 2>&1 | head -n1 | sed -E 's/.*version "([^"]+)".*/\1/')"
  major="${v%%.*}"
  [ "$major" = "1" ] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "could not read the Java version from: $(java -version 2>&1 | head -n1)"
  [ "$major" -ge 17 ] || die "Java 17 or newer is required; found Java $v."
}

install() {
  if [ -f "$home/.complete" ]; then return 0; fi
  require_java
  command -v mvn >/dev/null 2>&1 || die "Maven is required to fetch Kafka's jars and 'mvn' is not on PATH (Debian: apt-get install maven)."
  say "resolving Apache Kafka $version jars with Maven into $libs"
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$version" -Dlibs.dir="$libs" \
    || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)"
  touch "$home/.complete"
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_args=(java -Xms256m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true
           "-Dkafka.logs.dir=$data/logs" "-Dlog4j2.configurationFile=$here/log4j2.yaml"
           -cp "$libs/*")
java_cmd() { "${java_args[@]}" "$@"; }

configure() {
  mkdir -p "$data/logs" "$data/log"
  sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" -e "s#@DATA_DIR@#$data#g" \
      "$here/server.properties.template" > "$config"
  if [ ! -f "$data/log/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid)"
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$config" --ignore-formatted >/dev/null \
      || die "formatting KRaft storage in $data/log failed"
    say "formatted KRaft storage (cluster $cluster_id) in $data/log"
  fi
}

start() {
  local pid
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$port"; return 0; fi
  require_java
  install
  if port_open "$port"; then die "port $port on 127.0.0.1 is taken by another process; set STREAMREC_KAFKA_PORT."; fi
  configure
  : > "$logfile"
  local t0; t0="$(date +%s%N)"
  # setsid: the broker must outlive the shell (and make) that started it.
  setsid nohup "${java_args[@]}" kafka.Kafka "$config" >"$data/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  local deadline=$(( $(date +%s) + ready_timeout ))
  until port_open "$port" && grep -q "Kafka Server started" "$logfile" 2>/dev/null; do
    if ! running_pid >/dev/null; then
      echo "--- tail of $logfile ---" >&2; tail -n 40 "$logfile" "$data/logs/stdout.log" >&2 || true
      die "the broker exited during start-up"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "--- tail of $logfile ---" >&2; tail -n 40 "$logfile" >&2 || true
      die "the broker was not ready within ${ready_timeout}s"
    fi
    sleep 0.2
  done
  say "Apache Kafka $version ready on 127.0.0.1:$port (pid $(cat "$pidfile"), started in $(( ($(date +%s%N) - t0) / 1000000 )) ms; log $logfile)"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then say "not running"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then say "broker did not stop in 30s; killing"; kill -KILL "$pid" || true; fi
  rm -f "$pidfile"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(running_pid)" && port_open "$port"; then
    say "running (pid $pid) on 127.0.0.1:$port, data $data"
  elif pid="$(running_pid)"; then
    say "starting or unhealthy (pid $pid), port $port not open"; return 1
  else
    say "not running (port $port)"; return 3
  fi
}

case "${1:-}" in
  install) install; say "jars in $libs" ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  logs) tail -n "${2:-100}" "$logfile" ;;
  clean) stop; rm -rf "$data"; say "removed $data" ;;
  -h|--help|help|"")
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
  *) die "unknown verb '$1' (install | start | stop | status | restart | logs | clean)" ;;
esac
