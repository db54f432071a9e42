"""Retrieval speed and recall of every index type, beside exact (flat) search.

Data: vectors shaped like learned embeddings (``index.synthetic.EmbeddingWorld``:
300 Gaussian cluster centres in a 16-dimensional latent space, points spread
with std 0.7 around them, mapped to 64 dimensions by one random linear map,
isotropic noise 0.05, L2-normalised; seeded). Queries are further draws from
the same world, not catalogue items. Uniform random vectors would be a worst
case no real catalogue has.

For each catalogue size and index type: build time, queries per second for
batches of 1 and of 1,024 queries (k=100), recall@100 against the flat index's
answers in the same run, and batch throughput relative to the flat index.

    python bench/retrieval.py                          # 100k and 1M items, CPU
    python bench/retrieval.py --quick                  # 20k items, about a minute
    python bench/retrieval.py --device both --out bench/results/retrieval-gpu.json
    python bench/retrieval.py --set hnsw_ef_search=200 --kinds hnsw

GPU rows need a faiss GPU build (``faiss-gpu-cu12-cuvs``: native sm_90 for
H100/H200 and CAGRA; see bench/gpu_retrieval.sh and bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from index import IndexConfig, VectorIndex, build_index  # noqa: E402
from index import gpu as index_gpu  # noqa: E402
from index.synthetic import EmbeddingWorld  # noqa: E402

log = logging.getLogger("bench.retrieval")

K = 100
DEFAULT_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (20_000,)
APPROXIMATE = ("hnsw", "ivf", "ivfpq")
Device = Literal["cpu", "gpu", "both"]


def machine_info() -> dict[str, Any]:
    """Hardware and library versions, recorded next to the numbers."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu_name = None
    if index_gpu.gpu_available():
        try:
            gpu_name = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            gpu_name = "unknown"
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads(),
        # Spinning OpenMP threads collapse on a shared machine (flat single-query QPS fell 7x here).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": gpu_name,
        "cagra": index_gpu.cagra_available(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options(),
    }


def _sync(device: str) -> None:
    # GPU searches return host arrays, but make sure no queued work spills into or out of a timed region.
    if device == "gpu" and hasattr(faiss, "gpu_sync_all_devices"):
        faiss.gpu_sync_all_devices()


def _timed(fn: Callable[[], Any], device: str) -> float:
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def measure(
    index: VectorIndex,
    queries: np.ndarray,
    *,
    device: str,
    single_queries: int,
    min_seconds: float,
) -> tuple[float, float, np.ndarray]:
    """(qps for batches of 1, qps for the whole batch, ids of the batch's top-K)."""
    index.search(queries[:32], K)  # warm-up: caches, GPU replica, lazily built structures
    index.search(queries[:1], K)
    found: list[np.ndarray] = []
    batch_time, batches = 0.0, 0
    while batches == 0 or batch_time < min_seconds:
        batch_time += _timed(lambda: found.append(index.search(queries, K)[1]), device)
        batches += 1
    qps_batch = batches * queries.shape[0] / batch_time
    single_time, singles = 0.0, 0
    while singles < min(single_queries, queries.shape[0]) and (singles < 10 or single_time < min_seconds):
        q = queries[singles : singles + 1]
        single_time += _timed(lambda: index.search(q, K), device)
        singles += 1
    return singles / single_time, qps_batch, found[0]


EXCLUDED = 50  # per query, as a user's history: items near the query, which displace results


def measure_filtered(index: VectorIndex, queries: np.ndarray, truth: np.ndarray, min_seconds: float
                     ) -> tuple[float, float]:
    """(raw faiss batch QPS on the same faiss index, batch QPS of ``VectorIndex.search`` with
    :data:`EXCLUDED` of each query's true neighbours excluded): what the project's filtered path costs."""
    raw = index._cpu_index()  # the faiss object itself, its search parameters as built
    exclude = [t[:EXCLUDED][t[:EXCLUDED] >= 0] for t in truth]

    def rate(fn: Callable[[], Any]) -> float:
        fn()
        spent, runs = 0.0, 0
        while runs == 0 or spent < min_seconds:
            spent += _timed(fn, "cpu")
            runs += 1
        return runs * queries.shape[0] / spent

    return rate(lambda: raw.search(queries, K)), rate(lambda: index.search(queries, K, exclude=exclude))


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (m, K) present in the same row of ``found``."""
    hits = sum(np.intersect1d(f, t[t >= 0]).size for f, t in zip(found, truth))
    return hits / max(1, int((truth >= 0).sum()))


def run_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    kinds: Sequence[str] = APPROXIMATE,
    device: Device = "cpu",
    *,
    dim: int = 64,
    batch: int = 1_024,
    single_queries: int = 200,
    min_seconds: float = 1.0,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure every (size, kind, device) row; returns ``{"machine", "settings", "rows"}``.

    The flat index on the CPU is measured first for each size: its answers are the
    recall reference and its batch throughput the speedup baseline.
    """
    devices = {"cpu": ["cpu"], "gpu": ["gpu"], "both": ["cpu", "gpu"]}[device]
    if "gpu" in devices and not index_gpu.gpu_available():
        log.warning("no usable GPU: gpu rows skipped")
        devices = [d for d in devices if d != "gpu"] or ["cpu"]
    overrides = dict(overrides or {})
    world = EmbeddingWorld(dim=dim, seed=seed)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        items = world.sample(n, seed=1)
        queries = world.sample(batch, seed=2)
        ids = np.arange(n, dtype=np.int64)
        truth: np.ndarray | None = None
        flat_qps = float("nan")
        plan = [("flat", "cpu")] + [(kind, d) for d in devices for kind in ("flat", *kinds) if (kind, d) != ("flat", "cpu")]
        for kind, dev in plan:
            if dev == "gpu" and kind == "hnsw" and not index_gpu.cagra_available():
                log.warning("faiss build has no CAGRA: hnsw gpu row skipped")
                continue
            config = IndexConfig(**{**overrides, "kind": kind, "device": dev})
            started = time.perf_counter()
            index = build_index(items, ids, config)
            index.warm_up()
            _sync(dev)
            build_s = time.perf_counter() - started
            qps_single, qps_batch, found = measure(
                index, queries, device=dev, single_queries=single_queries, min_seconds=min_seconds
            )
            if truth is None:
                truth, flat_qps = found, qps_batch
            raw_qps, filtered_qps = (measure_filtered(index, queries, truth, min_seconds) if dev == "cpu"
                                     else (float("nan"), float("nan")))
            name = kind if dev == "cpu" else f"{kind}-gpu" if kind != "hnsw" else "cagra-gpu"
            row = {
                "n": n,
                "index": name,
                "device": index.device,
                "factory": index.factory_string if not (dev == "gpu" and kind == "hnsw") else "CAGRA (GPU) + HNSW (CPU copy)",
                "search_params": index.search_params(),
                "build_s": round(build_s, 3),
                "qps_single": round(qps_single, 1),
                "qps_batch": round(qps_batch, 1),
                "recall_at_100": round(recall_at(found, truth), 4),
                "speedup_vs_flat": round(qps_batch / flat_qps, 2),
                "raw_faiss_qps_batch": round(raw_qps, 1),
                "filtered_qps_batch": round(filtered_qps, 1),
                "filtered_vs_raw_faiss": round(filtered_qps / raw_qps, 3),
            }
            rows.append(row)
            if report:
                report(row)
            del index
    return {
        "machine": machine_info(),
        "settings": {
            "k": K, "dim": dim, "batch": batch, "single_queries": single_queries, "min_seconds": min_seconds,
            "generator": {f.name: getattr(world, f.name) for f in fields(world)}, "config_overrides": overrides,
        },  # fmt: skip
        "rows": rows,
    }


HEADER = ("n", "index", "device", "build s", "QPS (1)", "QPS (1024)", "recall@100", "vs flat",
          "raw faiss QPS (1024)", f"excluding {EXCLUDED}: QPS (1024)", "vs raw faiss")


def format_row(row: dict[str, Any]) -> str:
    cells = (
        f"{row['n']:,}", row["index"], row["device"], f"{row['build_s']:.1f}", f"{row['qps_single']:,.0f}",
        f"{row['qps_batch']:,.0f}", f"{row['recall_at_100']:.4f}", f"{row['speedup_vs_flat']:.1f}x",
        f"{row['raw_faiss_qps_batch']:,.0f}", f"{row['filtered_qps_batch']:,.0f}", f"{row['filtered_vs_raw_faiss']:.2f}x",
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + [format_row(r) for r in rows])


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    known = {f.name: f for f in fields(IndexConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in known or key in ("kind", "device"):
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY an IndexConfig field other than kind/device")
        out[key] = None if raw == "None" else json.loads(raw) if raw[:1].isdigit() or raw[:1] in "-[{" else raw
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See bench/README.md.")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="comma-separated catalogue sizes (default 100000,1000000; --quick: 20000)")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=list(APPROXIMATE),
                        help="approximate index types beside flat (default hnsw,ivf,ivfpq)")
    parser.add_argument("--device", choices=["cpu", "gpu", "both"], default="cpu",
                        help="where to run: gpu adds flat/ivf/ivfpq/CAGRA rows on the GPU (default cpu)")
    parser.add_argument("--quick", action="store_true", help="short form: 20,000 items, shorter timing loops")
    parser.add_argument("--dim", type=int, default=64, help="vector dimension (default 64)")
    parser.add_argument("--batch", type=int, default=1_024, help="queries per batch (default 1024)")
    parser.add_argument("--single-queries", type=int, default=200, help="at most this many batch-of-1 searches")
    parser.add_argument("--min-seconds", type=float, default=None, help="repeat timed loops at least this long")
    parser.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: all cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an IndexConfig field, e.g. --set ivf_nprobe=32 (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic world")
    parser.add_argument("--out", type=Path, default=None, help="write JSON {machine, settings, rows} here")
    args = parser.parse_args(argv)  # fmt: skip

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_seconds = args.min_seconds if args.min_seconds is not None else (0.3 if args.quick else 1.0)
    print(format_table([]), flush=True)
    result = run_bench(
        sizes, args.kinds, args.device, dim=args.dim, batch=args.batch,
        single_queries=min(args.single_queries, 50) if args.quick else args.single_queries,
        min_seconds=min_seconds, overrides=_parse_set(args.set), seed=args.seed,
        report=lambda row: print(format_row(row), flush=True),
    )  # fmt: skip
    machine = result["machine"]
    print(
        f"\nmachine: {machine['cpu']}, {machine['cpu_count']} cpus, faiss threads {machine['faiss_threads']}, "
        f"gpu {machine['gpu']}, faiss {machine['faiss']}, load at start {machine['load_average_at_start']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
