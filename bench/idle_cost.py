"""Idle cost: the CPU a worker spends with no events to process, by consumer fetch wait.

A worker with nothing to do still fetches: each fetch of its consumer waits at
the broker at most ``STREAMREC_CONSUMER_FETCH_MAX_WAIT_MS`` for records, so a
shorter wait (which bounds how long an idle partition's fetch can hold the
events partitions back, stream/runtime/README.md) means more fetches per
second. For each wait in ``--waits`` a worker over the bootstrap model starts,
settles, and its user + system CPU is read over ``--seconds``.

    python bench/idle_cost.py [--quick] [--waits 10,50,1500] [--seconds 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stream_common import bench_settings, machine, process_usage, start_worker, write_json  # noqa: E402
from models.data.synthetic import generate_demo_dataset  # noqa: E402
from stream.kafka.producer import publish_catalog  # noqa: E402


def idle_cpu(bootstrap: str, root: Path, partitions: int, wait_ms: int, seconds: float) -> dict:
    settings = bench_settings(bootstrap, root, partitions, consumer_fetch_max_wait_ms=wait_ms)
    data = generate_demo_dataset(n_users=100, n_items=200, events_per_user=1, seed=3)
    publish_catalog(settings, data.items)
    worker = start_worker(settings, root, items=len(data.items))
    try:
        time.sleep(5.0)  # past the start-up work (index build, first commits)
        cpu_before, _ = process_usage(worker.proc.pid)
        started = time.perf_counter()
        time.sleep(seconds)
        cpu_after, rss = process_usage(worker.proc.pid)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
    return {"fetch_max_wait_ms": wait_ms, "idle_cpu_percent": round(100 * (cpu_after - cpu_before) / elapsed, 2),
            "worker_rss_bytes": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--waits", default="10,50,1500", help="Fetch waits to measure, in ms, comma-separated.")
    parser.add_argument("--seconds", type=float, default=20.0, help="How long to read each idle worker's CPU.")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="A short form: 3 seconds per wait.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    try:
        waits = [int(w) for w in args.waits.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--waits takes comma-separated integers, not {args.waits!r}")
    seconds = 3.0 if args.quick else args.seconds
    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    runs = []
    print(f"{'fetch wait ms':>14} {'idle CPU %':>11}")
    for wait in waits:
        run = idle_cpu(args.bootstrap, root, args.partitions, wait, seconds)
        runs.append(run)
        print(f"{wait:>14} {run['idle_cpu_percent']:>11.2f}")
    print(f"(one worker, {seconds:.0f} s each, {machine()['cores']} cores, {machine()['cpu']})")
    write_json(args.out, {"machine": machine(), "seconds": seconds, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
