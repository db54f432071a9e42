"""Worker memory at scale: resident set with U users in state and N items indexed.

A generated catalogue of ``--items`` items (1,000,000 by default) is published,
then one event for each of ``--users`` users (1,000,000 by default); a
``streamrec worker`` serves the catalogue (``--model``/``--index`` as in
``bench/stream_throughput.py``) and processes every event, so each user has a
state row and a recommendation. Reported: the worker's resident set (RSS) once
everything is applied, its peak, and how long each phase took.

    python bench/worker_memory.py [--quick] [--users N] [--items N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._stream_common import (  # noqa: E402
    add_serving_arguments,
    bench_settings,
    index_overrides,
    machine,
    peak_rss,
    process_usage,
    publish_trained_model,
    serving,
    start_worker,
    wait_metric,
    write_json,
)
from models.data.synthetic import generate_demo_dataset  # noqa: E402
from stream.kafka.producer import EventProducer, publish_catalog  # noqa: E402

MiB = 2 ** 20


def one_event_per_user(n_users: int, items: list[dict], seed: int = 0) -> list[dict]:
    """One click per user on a popularity-skewed item, timestamps in order."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.2, len(items)) + 1.0
    chosen = rng.choice(len(items), size=n_users, p=popularity / popularity.sum())
    start = int(time.time() * 1000) - n_users
    return [{"user_id": f"m{u:07d}", "item_id": items[int(i)]["item_id"], "event_type": "click",
             "timestamp_ms": start + u} for u, i in enumerate(chosen)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--users", type=int, default=1_000_000, help="Users with state (one event each).")
    parser.add_argument("--partitions", type=int, default=8)
    add_serving_arguments(parser, items=1_000_000)
    parser.add_argument("--quick", action="store_true", help="A short form: 5,000 users and 5,000 items.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    n_users, n_items = (5_000, 5_000) if args.quick else (args.users, args.items)

    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    settings = bench_settings(args.bootstrap, root, args.partitions, **index_overrides(args.index))
    t0 = time.perf_counter()
    items = generate_demo_dataset(n_users=1, n_items=n_items, events_per_user=1, seed=3).items
    publish_catalog(settings, items)
    events = one_event_per_user(n_users, items)
    with EventProducer(settings, linger_ms=20, batch_size=256 * 1024) as producer:
        report = producer.send_many(events, total=len(events), progress=True)
    produced_s = time.perf_counter() - t0
    print(f"published {n_items:,} items and {report.sent:,} events in {produced_s:.0f} s")
    trained = publish_trained_model(settings, args.train_steps) if args.model == "trained" else None

    t1 = time.perf_counter()
    worker = start_worker(settings, root, items=n_items)
    try:
        served = serving(worker)
        ready_s = time.perf_counter() - t1
        _, rss_ready = process_usage(worker.proc.pid)
        wait_metric(worker, "streamrec_worker_events_applied_total", report.sent, 7200)
        applied_s = time.perf_counter() - t1 - ready_s
        time.sleep(2.0)  # let the last changelog and recommendation sends settle
        _, rss = process_usage(worker.proc.pid)
        peak = peak_rss(worker.proc.pid)
    finally:
        worker.stop()
    result = {
        "machine": machine(),
        "users": n_users,
        "items": n_items,
        "model": args.model,
        "model_version": served["model_version"],
        "index": served["index_kind"],
        "index_setting": args.index,
        "trained": trained,
        "worker_rss_bytes": rss,
        "worker_peak_rss_bytes": peak,
        "worker_rss_ready_bytes": rss_ready,
        "ready_s": round(ready_s, 1),
        "applied_s": round(applied_s, 1),
    }
    print(f"\n{'':<40}{'MiB':>10}")
    print(f"{'worker RSS, catalogue loaded':<40}{rss_ready / MiB:>10,.0f}")
    print(f"{'worker RSS, every user applied':<40}{rss / MiB:>10,.0f}")
    print(f"{'worker peak RSS':<40}{peak / MiB:>10,.0f}")
    print(f"{n_users:,} users, {n_items:,} items, {served['index_kind']} index, {args.model} model; ready in "
          f"{ready_s:.0f} s, events applied in {applied_s:.0f} s ({result['machine']['cores']} cores, "
          f"{result['machine']['cpu']})")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
