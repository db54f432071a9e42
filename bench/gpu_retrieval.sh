#!/usr/bin/env bash
# Retrieval bench on a GPU machine that has no package registry.
#
# Installs the faiss GPU wheels found in .whl/ (fetched beforehand, see
# bench/README.md "Retrieval on a GPU") into /tmp/site, prints the card, then
# runs bench/retrieval.py --device both: the CPU rows (flat, HNSW, IVF, IVF-PQ)
# and the GPU rows (flat, IVF, IVF-PQ, and CAGRA when the build has cuVS) in
# one table. With $OUT set, the table and JSON are written there too.
#
#   bench/gpu_retrieval.sh                                # 100k and 1M items
#   SIZES=100000 KINDS=ivf,hnsw bench/gpu_retrieval.sh    # a shorter run
#   bench/gpu_retrieval.sh --set ivf_nprobe=32            # extra args go to retrieval.py
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
SIZES=${SIZES:-100000,1000000}
KINDS=${KINDS:-hnsw,ivf,ivfpq}

echo "== python: $($PY -c 'import sys; print(sys.version.split()[0])')"

shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
    mkdir -p "$SITE"
    if $PY -m pip --version >/dev/null 2>&1; then
        $PY -m pip install --quiet --no-index --no-deps --upgrade --target "$SITE" "${wheels[@]}"
    else
        # No pip: a wheel is a zip archive laid out as site-packages.
        for w in "${wheels[@]}"; do $PY -m zipfile -e "$w" "$SITE"; done
    fi
    echo "== installed ${#wheels[@]} wheels into $SITE"
else
    echo "== no wheels in .whl/: using the faiss already importable here"
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
# The nvidia-* wheels put their shared libraries under nvidia/*/lib; faiss's
# RPATH finds them in a site-packages layout, this covers any other layout.
libdirs=("$SITE"/nvidia/*/lib "$SITE"/*/lib64 "$SITE"/*/lib)
if ((${#libdirs[@]})); then
    LD_LIBRARY_PATH="$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi

echo "== card"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || echo "nvidia-smi failed"

$PY - <<'EOF'
import faiss, sys
n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
print(f"== faiss {faiss.__version__}: gpus={n} gpu_code={hasattr(faiss, 'StandardGpuResources')} "
      f"cagra={hasattr(faiss, 'GpuIndexCagra')} options={faiss.get_compile_options()!r}")
if n < 1 or not hasattr(faiss, "StandardGpuResources"):
    sys.exit("faiss sees no GPU: install faiss-gpu-cu12-cuvs (see bench/README.md)")
EOF

args=(--device both --sizes "$SIZES" --kinds "$KINDS")
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    args+=(--out "$OUT/retrieval-gpu.json")
fi
echo "== $PY bench/retrieval.py ${args[*]} $*"
if [[ -n "${OUT:-}" ]]; then
    $PY bench/retrieval.py "${args[@]}" "$@" | tee "$OUT/retrieval-gpu.txt"
else
    $PY bench/retrieval.py "${args[@]}" "$@"
fi
