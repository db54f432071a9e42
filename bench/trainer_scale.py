"""The trainer's snapshot at scale: read time, events per second and peak memory of the training window.

A topic is filled with N generated events (keyed by user, pre-encoded JSON,
as fast as the producer client sends); then a child process takes the
trainer's snapshot (:func:`stream.trainer.snapshot.snapshot_events`: the
window from the topic's end, validated into NumPy columns) and cleans it into
``Interactions`` as the trainer does, and reports its own peak RSS (VmHWM:
``getrusage``'s ru_maxrss would carry the parent's over the exec), so each
figure is one fresh process's. With ``--baseline``
(default up to 10^6 events) a second child does the same with the trainer's
former snapshot: every record into a list, one dict per event, a DataFrame,
``preprocess``. With ``--parquet``, one child writes the window's columns to
a Parquet file and another reads them back and cleans them: what a cache
between runs would cost on a hit. With ``--catalog M``, M generated catalogue
records (title, text, category, tags) go to the ``items`` topic and two more
children read the catalogue alone: as columns (:func:`stream.trainer.snapshot.snapshot_items`)
and the former way (every record, one dict per item, a DataFrame).

    python bench/trainer_scale.py [--quick] [--events N] [--window W] [--partitions P]
                                  [--catalog M] [--parquet] [--reuse PREFIX]
                                  [--baseline/--no-baseline] [--out FILE]

``--reuse PREFIX`` reads the topics of an earlier run's namespace (printed by
it) instead of producing again: a window of 10^6 over 10^7 events without
producing 10^7 twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._stream_common import machine, peak_rss, write_json  # noqa: E402
from stream.core.topics import EVENTS, ITEMS  # noqa: E402
from stream.settings import Settings  # noqa: E402

QUICK_EVENTS = 20_000
EVENTS_PER_USER = 40


def generated(n: int, n_users: int, n_items: int, seed: int = 1):
    """``(user, value bytes)`` of ``n`` generated events: users with a taste for one block of the
    catalogue, one millisecond apart, all in the past."""
    rng = random.Random(seed)
    block = max(10, n_items // 50)
    kinds = ("click", "click", "click", "play", "play", "like", "skip", "cart", "purchase")
    start_ms = int(time.time() * 1000) - n
    for k in range(n):
        user = rng.randrange(n_users)
        item = (user % 50 * block + rng.randrange(block * 2)) % n_items
        kind = kinds[rng.randrange(len(kinds))]
        value = f',"value":{rng.randrange(5, 300)}.0' if kind == "play" else ""
        yield user, (f'{{"user_id":"u{user}","item_id":"i{item}","event_type":"{kind}",'
                     f'"timestamp_ms":{start_ms + k}{value}}}').encode()


async def produce_async(settings: Settings, n: int, n_items: int) -> float:
    """Send ``n`` generated events, keyed by user, in record batches per partition; returns events/s.

    One user's events go to one partition (user number modulo the partitions, in order), as a keyed
    producer sends them; batches built here rather than record by record, so 10^7 events take
    minutes, not an hour.
    """
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from stream.kafka.config import aiokafka_options

    topic, parts = settings.topic(EVENTS), settings.topic_partitions
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks=1, max_batch_size=1024 * 1024,
                                linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        batches = [producer.create_batch() for _ in range(parts)]
        pending: list = []
        bar = tqdm(total=n, unit="ev", unit_scale=True, desc=f"producing to {topic}", mininterval=2)
        for user, value in generated(n, max(10, n // EVENTS_PER_USER), n_items):
            p = user % parts
            if batches[p].append(key=b"u%d" % user, value=value, timestamp=None) is None:  # full
                batches[p].close()
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                bar.update(batches[p].record_count())
                batches[p] = producer.create_batch()
                batches[p].append(key=b"u%d" % user, value=value, timestamp=None)
                if len(pending) > 64:  # bounded in flight
                    await asyncio.gather(*pending)
                    pending = []
        for p, batch in enumerate(batches):
            batch.close()
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
                bar.update(batch.record_count())
        await asyncio.gather(*pending)
        bar.close()
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started)


def produce(settings: Settings, n: int, n_items: int) -> float:
    return asyncio.run(produce_async(settings, n, n_items))


WORDS = ("night drive synth album road mountain beach jazz saxophone smoky bebop travel passport journey "
         "collection edition classic blue explorer improvised swing trio rock ambient").split()


def catalog_records(n: int, seed: int = 2):
    """``(key, value bytes)`` of ``n`` generated catalogue records of about 400 bytes each."""
    rng = random.Random(seed)
    for k in range(n):
        words = [rng.choice(WORDS) for _ in range(40)]
        record = {"item_id": f"i{k}", "title": " ".join(words[:3]).title(), "text": " ".join(words[3:]),
                  "category": rng.choice(WORDS), "tags": sorted(set(rng.sample(WORDS, 3))), "price": k % 50}
        yield f"i{k}".encode(), json.dumps(record).encode()


async def produce_catalog_async(settings: Settings, n: int) -> None:
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from stream.kafka.config import aiokafka_options

    producer = AIOKafkaProducer(**aiokafka_options(settings), acks=1, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        pending = []
        for key, value in tqdm(catalog_records(n), total=n, unit="item", unit_scale=True, mininterval=2,
                               desc=f"producing to {settings.topic(ITEMS)}"):
            pending.append(await producer.send(settings.topic(ITEMS), value, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def catalog_columns(settings: Settings) -> tuple[int, int, int]:
    """The catalogue now: records applied to columns as fetched, aligned to every item id."""
    from models.data.dataset import IdMap
    from stream.trainer.snapshot import snapshot_items

    columns = snapshot_items(settings)
    catalog = columns.catalog(IdMap(tuple(columns.row)))
    return len(catalog), 0, len(catalog)


def catalog_dicts(settings: Settings) -> tuple[int, int, int]:
    """The catalogue before: every record read into a list, one dict per item, a DataFrame."""
    import pandas as pd

    from models.data.dataset import IdMap
    from models.data.loaders import _items_frame
    from models.data.preprocess import CleaningReport, RawData, _align_catalog, _catalog_frame
    from stream.core.items import parse_item
    from stream.errors import InvalidRecord
    from stream.kafka.reader import read_range

    items: dict[str, dict] = {}
    for record in asyncio.run(read_range(settings, settings.topic(ITEMS), timeout_s=3600)):
        try:
            item = parse_item(record.value)
        except InvalidRecord:
            continue
        items[item.item_id] = item.to_dict()
    frame = _items_frame(pd.DataFrame.from_records(list(items.values())), "bench")
    catalog = _align_catalog(IdMap(tuple(items)), _catalog_frame(RawData(pd.DataFrame(), frame, "bench")),
                             CleaningReport())
    return len(catalog), 0, len(catalog)


def old_snapshot(settings: Settings) -> tuple[int, int, int]:
    """The trainer's snapshot before issue 19: every record, one dict per event, then a DataFrame."""
    from models.data.loaders import from_events
    from models.data.preprocess import preprocess
    from stream.core.events import parse_event
    from stream.errors import InvalidEvent
    from stream.kafka.reader import read_range

    now_ms = int(time.time() * 1000)
    events, invalid = [], 0
    for record in asyncio.run(read_range(settings, settings.topic(EVENTS), timeout_s=3600)):
        try:
            events.append(parse_event(record.value or b"", now_ms=now_ms).to_dict())
        except InvalidEvent:
            invalid += 1
    interactions, _, _ = preprocess(from_events(events, None, name="bench"))
    return len(events), invalid, len(interactions)


def new_snapshot(settings: Settings) -> tuple[int, int, int]:
    """The trainer's snapshot now: the window as columns, cleaned from columns."""
    from models.data.columns import interactions_from_columns
    from stream.trainer.snapshot import snapshot_events

    columns, report = snapshot_events(settings)
    interactions, _, _ = interactions_from_columns(columns, None, name="bench")
    return report.events, report.invalid, len(interactions)


PARQUET_ENV = "STREAMREC_BENCH_PARQUET"  # where the parquet probe writes and reads its file


def parquet_write(settings: Settings) -> tuple[int, int, int]:
    """The window as columns written to one Parquet file (what a cache between runs would hold)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stream.trainer.snapshot import snapshot_events

    columns, report = snapshot_events(settings)
    table = pa.table({c: getattr(columns, c) for c in ("user", "item", "event_type", "value", "timestamp")})
    pq.write_table(table, os.environ[PARQUET_ENV])
    pq.write_table(pa.table({"id": list(columns.user_ids)}), os.environ[PARQUET_ENV] + ".users")
    pq.write_table(pa.table({"id": list(columns.item_ids)}), os.environ[PARQUET_ENV] + ".items")
    return report.events, report.invalid, 0


def parquet_read(settings: Settings) -> tuple[int, int, int]:
    """The columns read back from :func:`parquet_write`'s file and cleaned: a cache hit's cost."""
    import pyarrow.parquet as pq

    from models.data.columns import EventColumns, interactions_from_columns

    table = pq.read_table(os.environ[PARQUET_ENV])
    columns = EventColumns(*(table.column(c).to_numpy() for c in ("user", "item", "event_type", "value",
                                                                  "timestamp")),
                           user_ids=pq.read_table(os.environ[PARQUET_ENV] + ".users").column("id").to_pylist(),
                           item_ids=pq.read_table(os.environ[PARQUET_ENV] + ".items").column("id").to_pylist())
    interactions, _, _ = interactions_from_columns(columns, None, name="bench")
    return len(columns), 0, len(interactions)


PATHS = {"columns": new_snapshot, "dicts (before)": old_snapshot, "parquet write": parquet_write,
         "parquet cache read": parquet_read, "catalog columns": catalog_columns,
         "catalog dicts (before)": catalog_dicts}


def child(path: str, options: dict) -> dict:
    """Run one snapshot path in this (fresh) process with ``Settings(**options)`` and measure it."""
    settings = Settings(**options)
    import models.data.columns  # noqa: F401  (imports before the baseline RSS: what every path pays)
    import stream.trainer.snapshot  # noqa: F401

    import_rss = peak_rss(os.getpid())
    started = time.perf_counter()
    events, invalid, interactions = PATHS[path](settings)
    seconds = time.perf_counter() - started
    return {"path": path, "events_read": events, "invalid": invalid, "interactions": interactions,
            "snapshot_seconds": round(seconds, 2), "events_per_s": round(events / seconds, 1),
            "peak_rss_bytes": peak_rss(os.getpid()),
            "import_rss_bytes": import_rss}


def measure(path: str, options: dict) -> dict:
    """:func:`child` in a fresh interpreter (its peak RSS is its own)."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", path],
                          input=json.dumps(options), capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{path} snapshot failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(result: dict, what: str = "events") -> None:
    window = result["window_events"]
    print(f"\n{result['events_in_topic']:,} {what} in {result['partitions']} partitions, window "
          f"{'every record' if window is None else f'{window:,}'}")
    columns = (("snapshot", "path", "<24", ""), ("events read", "events_read", ">13", ","),
               ("seconds", "snapshot_seconds", ">10", ",.1f"), ("events/s", "events_per_s", ">12", ",.0f"))
    print("".join(f"{title:{align}}" for title, _, align, _ in columns) + f"{'peak RSS MiB':>14}{'imports MiB':>13}")
    for row in result["rows"]:
        cells = "".join(f"{row[key]:{align}{fmt}}" for _, key, align, fmt in columns)
        print(cells + f"{row['peak_rss_bytes'] / 2**20:>14,.0f}{row['import_rss_bytes'] / 2**20:>13,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--events", type=int, default=1_000_000, help="Generated events in the topic.")
    parser.add_argument("--window", type=int, default=None,
                        help="STREAMREC_TRAIN_WINDOW_EVENTS for the snapshot (default: every event).")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--items", type=int, default=20_000, help="Catalogue size of the generated events.")
    parser.add_argument("--catalog", type=int, default=0, metavar="M",
                        help="Also produce M catalogue records and measure the catalogue's snapshot (default: none).")
    parser.add_argument("--parquet", action="store_true",
                        help="Also write the window's columns to Parquet and time reading them back (a cache's hit).")
    parser.add_argument("--reuse", metavar="PREFIX", help="Read the topics of an earlier run's namespace.")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                        help="Also measure the former dict snapshot (default: up to 10^6 events).")
    parser.add_argument("--quick", action="store_true", help=f"A short form: {QUICK_EVENTS:,} events.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, json.loads(sys.stdin.read()))))
        return 0
    n = QUICK_EVENTS if args.quick else args.events
    baseline = n <= 1_000_000 if args.baseline is None else args.baseline

    from stream.kafka.admin import ensure_topics
    from stream.kafka.reader import end_offsets

    prefix = args.reuse or f"bench-{os.urandom(4).hex()}."
    root = Path(tempfile.mkdtemp(prefix="streamrec-trainer-scale-"))
    options = {"kafka_bootstrap": args.bootstrap, "topic_prefix": prefix, "topic_partitions": args.partitions,
               "data_dir": str(root / "state"), "artifacts_dir": str(root / "artifacts"), "log_level": "WARNING",
               "train_window_events": args.window, "train_window_days": None}
    settings = Settings(**options)
    ensure_topics(settings)
    produce_rate = None
    held = sum(asyncio.run(end_offsets(settings, settings.topic(EVENTS))).values())
    if held < n:
        produce_rate = produce(settings, n - held, args.items)
        print(f"produced {n - held:,} events to {settings.topic(EVENTS)} ({produce_rate:,.0f}/s); "
              f"reuse with --reuse {prefix}")
    held = sum(asyncio.run(end_offsets(settings, settings.topic(EVENTS))).values())

    rows = [measure("columns", options)]
    if baseline:
        rows.append(measure("dicts (before)", options))
    if args.parquet:
        os.environ[PARQUET_ENV] = str(root / "window.parquet")
        rows += [measure("parquet write", options), measure("parquet cache read", options)]
    catalog_rows = []
    if args.catalog:
        held_items = sum(asyncio.run(end_offsets(settings, settings.topic(ITEMS))).values())
        if held_items < args.catalog:
            asyncio.run(produce_catalog_async(settings, args.catalog))
        catalog_rows = [measure("catalog columns", options)]
        if baseline:
            catalog_rows.append(measure("catalog dicts (before)", options))
    result = {
        "machine": machine(), "events_in_topic": held, "window_events": args.window,
        "partitions": args.partitions, "items": args.items, "topic_prefix": prefix,
        "produce_events_per_s": None if produce_rate is None else round(produce_rate, 1),
        "rows": rows, "catalog_items": args.catalog, "catalog_rows": catalog_rows, **{k: rows[0][k] for k in ("snapshot_seconds", "events_per_s", "peak_rss_bytes")},
    }
    print_table(result)
    if catalog_rows:
        print_table({**result, "rows": catalog_rows, "events_in_topic": args.catalog, "window_events": None},
                    what="catalogue records")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
