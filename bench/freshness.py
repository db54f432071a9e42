"""Freshness: time from an event being produced to its recommendation being published, at a fixed rate.

A worker runs; a producer sends events at ``--rate`` per second (timestamped
at send time) for ``--seconds``; a consumer of the recommendations topic
matches each recommendation to its triggering event (recommendations of events
older than the clock's start, the pre-filled history's last batches, are left
out and counted in ``recommendations_of_earlier_events``). Reported: p50/p95/p99 of
(``published_ms`` - event timestamp), the worker-side freshness, and of the
time until the recommendation reached the consumer (end to end).

``--model``, ``--items`` and ``--index`` choose what the worker serves as in
``bench/stream_throughput.py`` (with ``--model trained`` the generated history is
produced and trained on first); the JSON also has the worker process's CPU time
per event and its resident memory.

    python bench/freshness.py [--quick] [--rate 1000] [--seconds 30] [--model content|trained]
                              [--items N] [--index auto|flat|ivf|hnsw] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

from bench._stream_common import (  # noqa: E402
    add_serving_arguments,
    bench_settings,
    index_overrides,
    machine,
    process_usage,
    publish_trained_model,
    serving,
    start_worker,
    wait_metric,
    write_json,
)
from models.data.synthetic import generate_demo_dataset  # noqa: E402
from stream.kafka.config import aiokafka_options  # noqa: E402
from stream.kafka.producer import EventProducer, publish_catalog  # noqa: E402


async def collect(settings, stop: threading.Event, out: list[tuple[dict, float]]) -> None:
    consumer = AIOKafkaConsumer(settings.topic("recommendations"), **aiokafka_options(settings), group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for messages in batch.values():
                out.extend((json.loads(m.value), now) for m in messages)
    finally:
        await consumer.stop()


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)} | {
        "max_ms": round(float(a.max()), 2), "mean_ms": round(float(a.mean()), 2)}


def slowest_seconds(received: list[tuple[dict, float]], started_ms: float, top: int = 5) -> list[dict]:
    """The seconds of the run (from the first event offered) with the slowest recommendation: where a tail comes from."""
    worst: dict[int, float] = {}
    for r, _ in received:
        second = int((r["event_timestamp_ms"] - started_ms) // 1000)
        worst[second] = max(worst.get(second, 0.0), r["published_ms"] - r["event_timestamp_ms"])
    ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:top]
    return [{"second": s, "max_ms": round(ms, 1)} for s, ms in ranked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--rate", type=float, default=1000.0, help="Offered events per second.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long to offer them.")
    parser.add_argument("--partitions", type=int, default=8)
    add_serving_arguments(parser, items=2000)
    parser.add_argument("--quick", action="store_true", help="A short form: 8 seconds.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    seconds = 8.0 if args.quick else args.seconds

    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    settings = bench_settings(args.bootstrap, root, args.partitions, **index_overrides(args.index))
    data = generate_demo_dataset(n_users=2000, n_items=args.items, events_per_user=5, seed=2)
    publish_catalog(settings, data.items)
    trained = None
    if args.model == "trained":
        with EventProducer(settings, linger_ms=20) as producer:
            producer.send_many(data.events, total=len(data.events), progress=True)
        trained = publish_trained_model(settings, args.train_steps)
    worker = start_worker(settings, root, items=len(data.items))
    served = serving(worker)
    if trained:  # the history the model was trained on goes through the worker before the clock starts
        wait_metric(worker, "streamrec_worker_events_applied_total", len(data.events), 600)
    received: list[tuple[dict, float]] = []
    stop = threading.Event()
    collector = threading.Thread(target=lambda: asyncio.run(collect(settings, stop, received)))
    collector.start()
    time.sleep(2.0)  # the collector is assigned and positioned at the end
    try:
        n = int(args.rate * seconds)
        events = [data.events[i % len(data.events)] for i in range(n)]
        rng = np.random.default_rng(0)
        users = [data.user_ids[i] for i in rng.integers(0, len(data.user_ids), n)]
        applied_before = worker.metric("streamrec_worker_events_applied_total")
        cpu_before, _ = process_usage(worker.proc.pid)
        with EventProducer(settings) as producer:
            started, started_ms = time.perf_counter(), time.time() * 1000
            for i, (e, u) in enumerate(zip(events, users)):
                delay = started + i / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                producer.send({**e, "user_id": u, "timestamp_ms": int(time.time() * 1000)})
            producer.flush()
            queue_ms = producer.queue_time_ms()
            offered = n / (time.perf_counter() - started)
        time.sleep(3.0)
        cpu_after, rss = process_usage(worker.proc.pid)
        applied = worker.metric("streamrec_worker_events_applied_total") - applied_before
    finally:
        stop.set()
        collector.join()
        worker.stop()
    # Only recommendations for the events offered on the clock: the last batches of the pre-filled
    # history (timestamps of the generated past) may still be published after the collector starts.
    earlier = sum(1 for r, _ in received if r["event_timestamp_ms"] < started_ms - 1)
    received = [(r, seen) for r, seen in received if r["event_timestamp_ms"] >= started_ms - 1]
    worker_side = [r["published_ms"] - r["event_timestamp_ms"] for r, _ in received]
    end_to_end = [seen - r["event_timestamp_ms"] for r, seen in received]
    result = {
        "machine": machine(),
        "rate": args.rate,
        "offered_rate": round(offered, 1),
        "seconds": seconds,
        "events": n,
        "recommendations": len(received),
        "recommendations_of_earlier_events": earlier,
        "model": args.model,
        "model_version": served["model_version"],
        "items": len(data.items),
        "index": served["index_kind"],
        "index_setting": args.index,
        "trained": trained,
        # the worker's CPU over the measured window (idle time included: at a fixed rate it is part of the cost)
        "worker_cpu_us_per_event": round((cpu_after - cpu_before) / max(applied, 1) * 1e6, 2),
        "worker_rss_bytes": rss,
        "settings": {k: getattr(settings, k) for k in ("batch_max_events", "producer_linger_ms",
                                                         "topic_partitions", "processing_guarantee")},
        **percentiles(worker_side),
        "end_to_end": percentiles(end_to_end),
        "slowest_seconds": slowest_seconds(received, started_ms),
        "producer_queue_ms": queue_ms,
    }
    print(f"\n{'':<34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    print(f"{'event -> recommendation published':<34}{result['p50_ms']:>9}{result['p95_ms']:>9}{result['p99_ms']:>9}")
    e2e = result["end_to_end"]
    print(f"{'event -> recommendation consumed':<34}{e2e['p50_ms']:>9}{e2e['p95_ms']:>9}{e2e['p99_ms']:>9}")
    print(f"worker CPU {result['worker_cpu_us_per_event']:.1f} us/event, RSS {rss / 2**20:,.0f} MiB; "
          f"{args.model} model ({served['model_version']}), {len(data.items):,} items, {served['index_kind']} index")
    print(f"the bench's producer held records {queue_ms['avg']:.1f} ms on average (max {queue_ms['max']:.1f})")
    print("slowest seconds: " + ", ".join(f"{w['second']}s {w['max_ms']:.0f} ms" for w in result["slowest_seconds"]))
    print(f"offered {offered:,.0f} events/s for {seconds:.0f}s; {len(received)} recommendations "
          f"({result['machine']['cores']} cores, {result['machine']['cpu']})")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
