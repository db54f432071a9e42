"""Reliability under faults: worker crashes, broker restarts, rebalances, bad input, corrupt artifacts, lost disk,
HTTP, poison pills on every consumed topic.

Each scenario breaks the system on purpose and then compares the worker's
``user-state`` changelog with an oracle replay of the same events written apart
from stream/ (bench/faults/oracle.py), and prints one row of figures: events,
kills, lost, applied twice, recommendations published twice, ...

    python bench/chaos.py [--quick] [--only crash,rebalance] [--out FILE]

The default is the long form (50,000-event crash runs with 6 SIGKILLs under each guarantee, ...);
``--quick`` is the short form that ``make test`` runs (tests/chaos). The broker
restart scenario starts a private broker with deploy/kafka/kafka.sh on free
ports; the others use ``--bootstrap``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stream_common import machine, write_json  # noqa: E402
from bench.faults import poison, scenarios, versions  # noqa: E402

# name: (long form, quick form); each a function of (bootstrap, root) -> Outcome.
Scenario = Callable[[str, Path], Any]
SCENARIOS: dict[str, tuple[Scenario, Scenario]] = {
    "crash": (lambda b, r: scenarios.crash(b, r, events=50_000, users=3000, kills=6, rate=900.0),
              lambda b, r: scenarios.crash(b, r, events=2000, users=200, kills=3, rate=80.0)),
    "crash-eos": (lambda b, r: scenarios.crash(b, r, events=50_000, users=3000, kills=6, rate=900.0,
                                               guarantee="exactly_once"),
                  lambda b, r: scenarios.crash(b, r, events=2000, users=200, kills=3, rate=80.0,
                                               guarantee="exactly_once")),
    "broker": (lambda b, r: scenarios.broker_restart(r, events=20_000, users=2000, restarts=3, rate=600.0),
               lambda b, r: scenarios.broker_restart(r, events=2000, users=200, restarts=1)),
    "rebalance": (lambda b, r: scenarios.rebalance(b, r, events=20_000, users=2000, rounds=3, rate=600.0),
                  lambda b, r: scenarios.rebalance(b, r, events=2500, users=200, rounds=1)),
    "bad-input": (lambda b, r: scenarios.bad_input(b, r, bad=30_000, valid=5000, users=500),
                  lambda b, r: scenarios.bad_input(b, r, bad=10_000, valid=500)),
    "artifacts": (lambda b, r: scenarios.corrupt_artifacts(b, r), lambda b, r: scenarios.corrupt_artifacts(b, r)),
    "disk": (lambda b, r: scenarios.lost_disk(b, r, events=20_000, users=2000),
             lambda b, r: scenarios.lost_disk(b, r, events=1500, users=150)),
    "http": (lambda b, r: scenarios.http_input(b, r, requests=5000),
             lambda b, r: scenarios.http_input(b, r, requests=1500)),
    "poison": (lambda b, r: poison.poison(b, r, items=10_000, announcements=1000),
               lambda b, r: poison.poison(b, r, items=400, announcements=40)),
    "versions": (lambda b, r: versions.versions_fuzz(b, r, records=10_000, rounds=20, folders_per_kind=2),
                 lambda b, r: versions.versions_fuzz(b, r, records=600, rounds=3)),
}
COLUMNS = ("scenario", "events_sent", "kills", "broker_restarts", "second_worker_joins", "bad_records", "requests",
           "crashes", "refused_not_in_dead_letter",
           "lost", "applied_twice", "users_wrong", "recommendations_duplicated", "unexpected", "seconds")


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the figures every row shares (blank where a scenario has none)."""
    lines = ["| " + " | ".join(COLUMNS) + " | ok |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        cells = [str(row.get(c, "")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if row['ok'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap server(s).")
    parser.add_argument("--quick", action="store_true", help="The short forms (a few minutes).")
    parser.add_argument("--only", help=f"Comma-separated scenarios among {', '.join(SCENARIOS)}.")
    parser.add_argument("--out", help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose among {', '.join(SCENARIOS)}")

    rows = []
    started = time.perf_counter()
    for name in names:
        root = Path(tempfile.mkdtemp(prefix=f"streamrec-chaos-{name}-"))
        run = SCENARIOS[name][1 if args.quick else 0]
        print(f"--- {name} ({'quick' if args.quick else 'long'}) in {root}", flush=True)
        try:
            outcome = run(args.bootstrap, root)
            row = {**outcome.figures, "ok": outcome.ok, "problems": outcome.problems,
                   "examples": outcome.state.examples if outcome.state else []}
        except Exception as e:  # noqa: BLE001  (one scenario's failure must not hide the others' figures)
            row = {"scenario": name, "ok": False, "problems": [f"{type(e).__name__}: {e}"]}
        print("\n".join(f"  {k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    print("\n" + table(rows))
    print(f"\n{len(rows)} scenarios in {time.perf_counter() - started:.0f}s "
          f"({machine()['cores']} cores, {machine()['cpu']})")
    write_json(args.out, {"machine": machine(), "quick": args.quick, "scenarios": rows})
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
