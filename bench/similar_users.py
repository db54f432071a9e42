"""Similar users over every worker: the latency of GET /users/{user}/similar on one worker holding
every user against two workers that scatter-gather (the owner asks the other for its nearest).

The same generated users go to two namespaces: one with a single worker, one with two. Requests
(sequential, loopback, the same users in the same order) are sent to each; reported: p50/p95/p99
per setting, their ratio, and whether both answered the same users.

    python bench/similar_users.py [--quick] [--users 5000] [--requests 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(worker, users: list[str], requests: int, k: int) -> tuple[list[float], list[list[str]], int]:
    """Latencies (ms) of the 200 answers, the users each answered, and how many were partial."""
    latencies, answers, partial = [], [], 0
    for i in range(requests):
        t = time.perf_counter()
        status, body = worker.get(f"/users/{users[i % len(users)]}/similar?k={k}")
        ms = (time.perf_counter() - t) * 1000
        if status == 200:
            latencies.append(ms)
            answers.append([(u["user_id"], u["score"]) for u in body["users"]])
            partial += bool(body.get("partial"))
        else:
            answers.append([])
    return latencies, answers, partial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--users", type=int, default=5000, help="Generated users (each gets an embedding).")
    parser.add_argument("--items", type=int, default=2000, help="Catalogue size.")
    parser.add_argument("--requests", type=int, default=1000, help="Requests per setting.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="A short form: 300 users, 100 requests.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)

    from bench._stream_common import bench_settings, free_port, machine, start_worker, write_json
    from bench.freshness import percentiles
    from models.data.synthetic import generate_demo_dataset
    from stream.kafka.producer import EventProducer, publish_catalog
    from stream.settings import Settings

    users, requests = (300, 100) if args.quick else (args.users, args.requests)
    data = generate_demo_dataset(n_users=users, n_items=args.items, events_per_user=5, seed=6)
    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    workers, results = [], {}
    try:
        for setting, count in (("one worker", 1), ("two workers", 2)):
            settings = bench_settings(args.bootstrap, root / setting.replace(" ", "-"), args.partitions)
            publish_catalog(settings, data.items)
            with EventProducer(settings, linger_ms=20) as producer:
                producer.send_many(data.events, total=len(data.events), progress=True)
            group = [start_worker(settings, root / setting.replace(" ", "-"), items=len(data.items))]
            if count == 2:
                other = Settings(**{**settings.model_dump(), "web_port": free_port(),
                                    "data_dir": root / "second" / "state"})
                group.append(start_worker(other, root / "second", items=len(data.items)))
            workers += group
            deadline = time.monotonic() + 300
            while sum(len(w.get("/healthz")[1].get("partitions", [])) for w in group) != args.partitions \
                    or any(not w.get("/healthz")[1].get("partitions") for w in group):
                if time.monotonic() > deadline:
                    raise TimeoutError("partitions not shared")
                time.sleep(0.5)
            total = 0.0
            while total < len(data.events):
                total = sum(w.metric("streamrec_worker_events_applied_total") for w in group)
                time.sleep(0.5)
            measure(group[0], data.user_ids, 20, args.k)  # warm the connections and the indexes
            latencies, answers, partial = measure(group[0], data.user_ids, requests, args.k)
            results[setting] = {"workers": count, "answered_200": len(latencies), "partial": partial,
                                **percentiles(latencies), "answers": answers}
            for w in group:
                w.stop()
    finally:
        for w in workers:
            w.stop()
    one, two = results["one worker"], results["two workers"]
    one_answers, two_answers = one.pop("answers"), two.pop("answers")
    same = sum([u for u, _ in a] == [u for u, _ in b] for a, b in zip(one_answers, two_answers))
    # Where the two differ, is it only the order of users with equal scores (identical vectors)?
    ties_only = sum(sorted(a, key=lambda t: (-t[1], t[0])) == sorted(b, key=lambda t: (-t[1], t[0]))
                    for a, b in zip(one_answers, two_answers) if [u for u, _ in a] != [u for u, _ in b])
    result = {"machine": machine(), "users": users, "items": args.items, "requests": requests, "k": args.k,
              "one_worker": one, "two_workers": two,
              "p50_ratio": round(two["p50_ms"] / one["p50_ms"], 2), "p99_ratio": round(two["p99_ms"] / one["p99_ms"], 2),
              "same_answers": same, "differing_only_in_tied_order": ties_only}
    print(f"\n{'GET /users/{user}/similar':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, r in (("one worker (local)", one), ("two workers (fan-out)", two)):
        print(f"{name:<26}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}")
    print(f"two against one: p50 x{result['p50_ratio']}, p99 x{result['p99_ratio']}; the same users in "
          f"{same} of {requests} answers ({ties_only} more differ only in the order of equal scores); {users:,} users ({result['machine']['cores']} cores, "
          f"{result['machine']['cpu']})")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
