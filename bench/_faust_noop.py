"""A Faust app whose agent only counts events in micro-batches: the ceiling of Faust's stream path.

Run by ``bench/stream_throughput.py`` as ``python -m faust -A bench._faust_noop worker``
with ``NOOP_*`` variables; prints one ``NOOP_RESULT {json}`` line and exits.
"""

from __future__ import annotations

import json
import os
import time

import faust

TOTAL = int(os.environ.get("NOOP_EVENTS", "0"))
app = faust.App(
    os.environ.get("NOOP_APP_ID", "streamrec-noop"),
    broker=f"kafka://{os.environ.get('NOOP_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("NOOP_DATADIR", "/tmp/streamrec-noop-data"),  # not the working directory
    web_port=int(os.environ.get("NOOP_WEB_PORT", "6099")),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",  # loopback only: a benchmark child serves nobody
    consumer_auto_offset_reset="earliest",
    autodiscover=False,
)
topic = app.topic(os.environ.get("NOOP_TOPIC", "events"), key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def count(stream):
    """Take the same micro-batches as the worker (2,000 events, 5 ms) and do nothing with them."""
    seen, batches, started = 0, 0, None
    async for events in stream.take_events(int(os.environ.get("NOOP_BATCH", "2000")), within=0.005):
        started = started or time.perf_counter()
        seen += len(events)
        batches += 1
        if seen >= TOTAL:
            break
    seconds = time.perf_counter() - started
    print("NOOP_RESULT " + json.dumps({"events": seen, "seconds": seconds, "batches": batches}), flush=True)
    os._exit(0)  # a benchmark child: no graceful shutdown to wait for
