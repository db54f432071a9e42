"""Events per second through the whole worker path, beside a bare aiokafka consumer, in one run.

A topic is pre-filled with N generated events (200,000 by default); then a
bare aiokafka consumer reads it end to end (no processing: the ceiling), and a
Faust agent that takes the same micro-batches and does nothing with them (the
ceiling of Faust's per-event stream path), and a ``streamrec worker`` processes
it (validation, RocksDB state, user vectors, batched FAISS search, one
recommendation published per user per batch).

The worker serves ``--model content`` (the bootstrap content-v0 version) or
``--model trained`` (a version the project's trainer trains on the pre-filled
events and publishes first), over a generated catalogue of ``--items`` items
behind the ``--index`` kind. Besides events/s, the worker process's own CPU time
per event (user + system, over the events it processed) and its resident memory.

    python bench/stream_throughput.py [--quick] [--events N] [--model content|trained] [--items N]
                                      [--index auto|flat|ivf|hnsw] [--out FILE] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench._stream_common import (  # noqa: E402
    add_serving_arguments,
    bench_settings,
    free_port,
    index_overrides,
    machine,
    print_profile,
    RunTooShort,
    measure_drain,
    publish_trained_model,
    serving,
    start_worker,
    write_json,
)
from models.data.synthetic import generate_demo_dataset  # noqa: E402
from stream.kafka.config import aiokafka_options  # noqa: E402
from stream.kafka.producer import EventProducer, publish_catalog  # noqa: E402


async def bare_consumer_rate(settings, topic: str, total: int) -> float:
    """Events per second of an aiokafka consumer that only reads ``topic`` to the end."""
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        begins = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, begins[tp])
        seen, started = 0, time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(v) for v in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def faust_noop_rate(settings, topic: str, total: int, batch: int) -> float:
    """Events per second of a Faust agent that takes the worker's micro-batches and does nothing."""
    datadir = Path(settings.data_dir) / "noop"
    datadir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NOOP_EVENTS": str(total), "NOOP_TOPIC": topic, "NOOP_BATCH": str(batch),
           "NOOP_BOOTSTRAP": ";kafka://".join(settings.kafka_bootstrap), "NOOP_APP_ID": f"{settings.app_id}-noop",
           "NOOP_WEB_PORT": str(free_port()), "NOOP_DATADIR": str(datadir),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "faust", "-A", "bench._faust_noop", "worker", "-l", "info"],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    for line in (out.stdout + out.stderr).splitlines():
        if "NOOP_RESULT " in line:
            result = json.loads(line.split("NOOP_RESULT ", 1)[1])
            return result["events"] / result["seconds"]
    raise RuntimeError(f"the Faust no-op agent did not finish:\n{out.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--events", type=int, default=200_000, help="Events in the pre-filled topic.")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch-max-events", type=int, default=None,
                        help="The worker's STREAMREC_BATCH_MAX_EVENTS (default: the worker's own default): "
                             "records one fetch may return, so the most events one batch processes.")
    add_serving_arguments(parser, items=2000)
    parser.add_argument("--quick", action="store_true", help="A short form: 20,000 events.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    parser.add_argument("--profile", metavar="FILE",
                        help="Run the worker under cProfile, write its statistics here and print the top.")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.events

    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    overrides = {} if args.batch_max_events is None else {"batch_max_events": args.batch_max_events}
    settings = bench_settings(args.bootstrap, root, args.partitions, **overrides, **index_overrides(args.index))
    n_users = max(10, n // 40)
    data = generate_demo_dataset(n_users=n_users, n_items=args.items, events_per_user=n // n_users + 10, seed=1)
    events = data.events[:n]
    publish_catalog(settings, data.items)
    with EventProducer(settings, linger_ms=20, batch_size=256 * 1024) as producer:
        report = producer.send_many(events, total=len(events), progress=True)
    print(f"pre-filled {settings.topic('events')} with {report.sent} events ({report.rate:,.0f}/s)")
    trained = publish_trained_model(settings, args.train_steps) if args.model == "trained" else None

    bare = asyncio.run(bare_consumer_rate(settings, settings.topic("events"), report.sent))
    noop = faust_noop_rate(settings, settings.topic("events"), report.sent, settings.batch_max_events)
    # Healthy (catalogue and model loaded) is looked for every 20 ms, and the window opens at the
    # first scrape that sees events consumed, so the figures are the events' own.
    worker = start_worker(settings, root, args.profile, items=len(data.items), poll=0.02)
    try:
        served = serving(worker)
        drain = measure_drain(worker, report.sent)
        published = worker.metric("streamrec_worker_recommendations_published_total")
    except RunTooShort as e:
        print(f"stream_throughput: {e}", file=sys.stderr)
        return 2
    finally:
        worker.stop()
    rate, rss = drain.rate, drain.rss_bytes
    model = (f"{served['model_version']} ({trained['tower']}, trained on {trained['trained_items']:,} items)"
             if trained else "content-v0 (hashed content vectors, recency-weighted mean user vectors)")
    result = {
        "machine": machine(),
        "events": report.sent,
        "users": n_users,
        "items": len(data.items),
        "partitions": args.partitions,
        "batch_max_events": settings.batch_max_events,
        "model": args.model,
        "model_detail": model,
        "model_version": served["model_version"],
        "index": served["index_kind"],
        "index_setting": args.index,
        "trained": trained,
        "served_items": served["items"],
        "measured_events": drain.events,  # consumed inside the measured window (see measure_drain)
        "measured_seconds": round(drain.seconds, 3),
        # the worker process's own CPU (all its threads) over the window, per event consumed in it
        "worker_cpu_us_per_event": round(drain.cpu_us_per_event, 2),
        "worker_rss_bytes": rss,
        "recommendations_published": published,
        "streamrec_events_per_s": round(rate, 1),
        "bare_consumer_events_per_s": round(bare, 1),
        "ratio": round(rate / bare, 4),
        "faust_noop_agent_events_per_s": round(noop, 1),
        "ratio_to_faust_noop": round(rate / noop, 4),
    }
    print(f"\n{'path':<28}{'events/s':>12}")
    print(f"{'bare aiokafka consumer':<28}{bare:>12,.0f}")
    print(f"{'Faust agent doing nothing':<28}{noop:>12,.0f}")
    print(f"{'streamrec worker':<28}{rate:>12,.0f}")
    print(f"worker CPU {result['worker_cpu_us_per_event']:.1f} us/event, RSS {rss / 2**20:,.0f} MiB; "
          f"{args.model} model, {len(data.items):,} items, {served['index_kind']} index")
    print(f"ratio {result['ratio']:.3f}; {published:.0f} recommendations for {report.sent} events "
          f"({result['machine']['cores']} cores, {result['machine']['cpu']})")
    write_json(args.out, result)
    if args.profile:
        print_profile(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
