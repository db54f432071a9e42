"""Events per second of the worker's batch logic alone: no Kafka, no Faust, no RocksDB.

``stream.serving.processor.BatchProcessor`` (validation, state update, user vectors,
batched FAISS search with exclusion, reasons, recommendation records) and the
state's JSON round trip, on the same generated data as
``bench/stream_throughput.py``, at several batch sizes. Together with that
script's Faust no-op agent it splits the worker's time between the framework
and this project's own per-event work.

    python bench/stream_logic.py [--quick] [--events N] [--stdlib-json] [--gc-freeze] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import torch  # noqa: E402

from bench._stream_common import machine, write_json  # noqa: E402
from models.data.synthetic import generate_demo_dataset  # noqa: E402
from stream.core.state import UserState  # noqa: E402
from stream.core.trending import TrendingCounter  # noqa: E402
from stream.serving.model import ModelHolder, bootstrap_model  # noqa: E402
from stream.serving.processor import BatchProcessor, Record  # noqa: E402


def logic_rate(records: list[Record], processor: BatchProcessor, batch: int,
               stdlib_json: bool = False) -> dict[str, float]:
    """Process ``records`` in batches of ``batch``; states go through JSON as in the table
    (``UserState.to_bytes``/``from_bytes``, or the stdlib's ``json`` with ``stdlib_json``)."""
    store: dict[str, bytes] = {}

    def load(user_id: str, _record: Record) -> UserState:
        return UserState.from_bytes(store.get(user_id))

    def load_stdlib(user_id: str, _record: Record) -> UserState:
        raw = store.get(user_id)
        return UserState.from_json(json.loads(raw) if raw is not None else None)

    def dump_stdlib(state: UserState) -> bytes:
        return json.dumps(state.to_json(), separators=(",", ":")).encode()

    loader, dump = (load_stdlib, dump_stdlib) if stdlib_json else (load, UserState.to_bytes)
    updates = 0
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        result = processor.process(records[start:start + batch], loader)
        for user_id, update in result.updates.items():
            store[user_id] = dump(update.state)
        updates += len(result.updates)
    seconds = time.perf_counter() - started
    return {"batch": batch, "events_per_s": round(len(records) / seconds, 1),
            "us_per_user_update": round(seconds / max(updates, 1) * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="Events per batch size.")
    parser.add_argument("--batches", default="1,5,50,500", help="Comma-separated batch sizes.")
    parser.add_argument("--quick", action="store_true", help="A short form: 5,000 events.")
    parser.add_argument("--stdlib-json", action="store_true",
                        help="States through the stdlib's json (UserState.to_json/from_json), as before orjson.")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after setup: full collections then skip the startup heap "
                             "(torch, the generated data), as in a worker that freezes after loading.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else args.events
    torch.set_num_threads(1)  # as in the worker
    faiss.omp_set_num_threads(1)
    n_users = max(10, n // 40)
    data = generate_demo_dataset(n_users=n_users, n_items=2000, events_per_user=n // n_users + 10, seed=1)
    records = [Record("events", 0, i, e["user_id"].encode(), json.dumps(e).encode(), 0)
               for i, e in enumerate(data.events[:n])]
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    rows = []
    print(f"{'batch':>6}{'events/s':>12}{'us/user update':>16}")
    for batch in (int(b) for b in args.batches.split(",")):
        processor = BatchProcessor(ModelHolder(bootstrap_model(data.items)), TrendingCounter(3600.0), 10, 200)
        row = logic_rate(records, processor, batch, stdlib_json=args.stdlib_json)
        rows.append(row)
        print(f"{row['batch']:>6}{row['events_per_s']:>12,.0f}{row['us_per_user_update']:>16,.0f}")
    m = machine()
    print(f"{len(records)} events of {n_users} users, 2,000 items, content-v0 model ({m['cores']} cores, {m['cpu']})")
    write_json(args.out, {"machine": m, "events": len(records), "users": n_users, "items": len(data.items),
                          "state_json": "stdlib json" if args.stdlib_json else "orjson (UserState.to_bytes/from_bytes)",
                          "gc_freeze": args.gc_freeze,
                          "model": "content-v0 (flat index, recency-weighted mean user vectors)", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
