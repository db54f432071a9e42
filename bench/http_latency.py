"""HTTP latency under load: GET /recommendations/{user} while the worker processes events at a fixed rate.

A worker serves a generated catalogue (``--model``/``--items``/``--index`` as in
``bench/stream_throughput.py``) and holds a recommendation for every generated
user. A producer offers ``--rate`` events per second (5,000 by default); a load
generator in another process (loopback only, a bounded number of requests:
``--requests`` at ``--request-rate`` per second over ``--concurrency``
keep-alive connections) asks for users' recommendations meanwhile. Reported:
p50/p95/p99 of the request latency seen by the client, and the event rate the
worker kept up with.

    python bench/http_latency.py [--quick] [--rate 5000] [--requests 3000] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MAX_REQUESTS = 100_000


def client(url: str, users: list[str], requests: int, rate: float, concurrency: int) -> dict:
    """The load generator: ``requests`` GETs paced at ``rate``/s; the latencies (ms) of the 200 answers and
    the count of every status (0: no answer), what the child process prints."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loopback only, got {parts.hostname}")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    started = time.perf_counter()

    def run(worker: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for i in range(worker, requests, concurrency):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t = time.perf_counter()
            try:
                conn.request("GET", f"/recommendations/{users[i % len(users)]}?k=10")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            ms = (time.perf_counter() - t) * 1000
            with lock:
                if status == 200:
                    latencies.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies_ms": latencies, "statuses": statuses, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--rate", type=float, default=5000.0, help="Events per second offered meanwhile.")
    parser.add_argument("--requests", type=int, default=3000, help=f"HTTP requests (at most {MAX_REQUESTS:,}).")
    parser.add_argument("--request-rate", type=float, default=200.0, help="HTTP requests per second.")
    parser.add_argument("--concurrency", type=int, default=4, help="Keep-alive connections of the load generator.")
    parser.add_argument("--users", type=int, default=5000, help="Generated users (each has a recommendation).")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="A short form: 300 requests at 1,000 events/s.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # the load generator's own mode
    from bench._stream_common import add_serving_arguments

    add_serving_arguments(parser, items=2000)
    args = parser.parse_args(argv)
    if args.client:
        users = json.loads(sys.stdin.read())
        print(json.dumps(client(args.client, users, min(args.requests, MAX_REQUESTS), args.request_rate,
                                args.concurrency)))
        return 0
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    from bench._stream_common import (
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
    from bench.freshness import percentiles
    from models.data.synthetic import generate_demo_dataset
    from stream.kafka.producer import EventProducer, publish_catalog

    rate, requests = (1000.0, 300) if args.quick else (args.rate, min(args.requests, MAX_REQUESTS))
    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    settings = bench_settings(args.bootstrap, root, args.partitions, **index_overrides(args.index))
    data = generate_demo_dataset(n_users=args.users, n_items=args.items, events_per_user=5, seed=4)
    publish_catalog(settings, data.items)
    with EventProducer(settings, linger_ms=20) as producer:
        producer.send_many(data.events, total=len(data.events), progress=True)
    trained = publish_trained_model(settings, args.train_steps) if args.model == "trained" else None
    worker = start_worker(settings, root, items=len(data.items))
    try:
        served = serving(worker)
        wait_metric(worker, "streamrec_worker_events_applied_total", len(data.events), 600)  # everyone has one
        applied_before = worker.metric("streamrec_worker_events_applied_total")
        cpu_before, _ = process_usage(worker.proc.pid)
        stop = threading.Event()
        offered: list[float] = []

        def produce() -> None:
            rng = np.random.default_rng(0)
            with EventProducer(settings) as p:
                started, i = time.perf_counter(), 0
                while not stop.is_set():
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(min(delay, 0.05))
                        continue
                    e = data.events[int(rng.integers(len(data.events)))]
                    p.send({**e, "timestamp_ms": int(time.time() * 1000)})
                    i += 1
                p.flush()
                offered.append(i / (time.perf_counter() - started))

        producer_thread = threading.Thread(target=produce)
        producer_thread.start()
        time.sleep(2.0)  # the worker is under the event load before the first request
        load = subprocess.run([sys.executable, __file__, "--client", worker.url, "--requests", str(requests),
                               "--request-rate", str(args.request_rate), "--concurrency", str(args.concurrency)],
                              input=json.dumps(data.user_ids), capture_output=True, text=True, timeout=3600)
        stop.set()
        producer_thread.join()
        if load.returncode != 0:
            raise RuntimeError(f"the load generator failed:\n{load.stderr[-3000:]}")
        measured = json.loads(load.stdout)
        time.sleep(2.0)
        applied = worker.metric("streamrec_worker_events_applied_total") - applied_before
        cpu_after, rss = process_usage(worker.proc.pid)
    finally:
        worker.stop()
    window_s = measured["seconds"] + 4.0
    ok = measured["latencies_ms"]
    if not ok:
        raise RuntimeError(f"no request was answered 200: {measured['statuses']}")
    result = {
        "machine": machine(),
        "rate": rate,
        "offered_rate": round(offered[0], 1) if offered else None,
        "applied_events_per_s": round(applied / window_s, 1),
        "requests": requests,
        "answered_200": len(ok),
        "request_rate": args.request_rate,
        "concurrency": args.concurrency,
        "statuses": measured["statuses"],
        "model": args.model,
        "model_version": served["model_version"],
        "items": len(data.items),
        "index": served["index_kind"],
        "trained": trained,
        **percentiles(ok),
        "worker_cpu_us_per_event": round((cpu_after - cpu_before) / max(applied, 1) * 1e6, 2),
        "worker_rss_bytes": rss,
    }
    print(f"\n{'GET /recommendations/{user}':<34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    print(f"{f'while {rate:,.0f} events/s offered':<34}{result['p50_ms']:>9}{result['p95_ms']:>9}{result['p99_ms']:>9}")
    print(f"{len(ok)} requests at {args.request_rate:.0f}/s over {args.concurrency} connections, statuses "
          f"{measured['statuses']}; the worker applied {result['applied_events_per_s']:,.0f} events/s "
          f"({result['machine']['cores']} cores, {result['machine']['cpu']})")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
