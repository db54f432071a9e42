"""Offline quality of the baselines (and any registered model) on MovieLens.

Protocol: chronological leave-one-out (each user's last interaction is the
test item, the one before validation; equal timestamps keep source order;
users with fewer than 3 interactions are left out of the test), full ranking
over all items with the user's training and validation items excluded, @10.
Also replays ml-100k in time order through an online item-kNN (prequential
HR@10 / NDCG@10) next to a batch item-kNN frozen at the warm-up cut-off.

    python bench/quality.py                    # both data sets, all models
    python bench/quality.py --quick            # small slice, seconds
    python bench/quality.py --data ml-100k --models pop,itemknn --out bench/results/q.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models.train.recommender  # noqa: E402,F401  (registers two_tower_{mean,gru,cnn,sasrec} for "all")
from models.data.dataset import load_dataset  # noqa: E402
from models.evaluate.registry import available_models  # noqa: E402
from models.evaluate.report import load_split, run_report  # noqa: E402
from models.evaluate.streaming import format_windows, replay  # noqa: E402

log = logging.getLogger("bench.quality")

DEFAULT_DATA = ("ml-1m", "ml-100k")
QUICK_USERS = 150
QUICK_MODEL_OPTIONS = {"bpr": {"iterations": 10}, "als": {"iterations": 3},
                       **{f"two_tower_{t}": {"epochs": 2, "patience": 1} for t in ("mean", "gru", "cnn", "sasrec")}}


def run(
    data: Sequence[str] = DEFAULT_DATA,
    models: list[str] | str = "all",
    out: Path | None = None,
    quick: bool = False,
    streaming: bool = True,
    ks: Sequence[int] = (5, 10, 20, 50),
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one report per data set (and the streaming replay on the first); returns all results."""
    results: dict[str, Any] = {"quick": quick, "reports": {}, "streaming": None}
    options: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    for name in data:
        split = load_split(name, max_users=QUICK_USERS if quick else None, **options)
        png = out.with_name(f"{out.stem}-{Path(name).name}.png") if out else None
        results["reports"][split.name or name] = run_report(
            split.name or name, models, out_json=None, out_png=png, ks=ks, split=split,
            model_options=QUICK_MODEL_OPTIONS if quick else None, progress=not quick,
        )
        print()
    if streaming and data:
        name = "ml-100k" if "ml-100k" in data else data[0]
        interactions, catalog = load_dataset(name, max_users=QUICK_USERS if quick else None, **options)
        res = replay(interactions, catalog, progress=not quick)
        res["dataset"] = name
        results["streaming"] = res
        print(f"{name}: streaming replay, {res['protocol']['scored_events']} scored events after a "
              f"{res['protocol']['warmup_fraction']:.0%} warm-up")
        print(format_windows(res))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
        log.info("wrote path=%s", out)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", metavar="ml-100k|ml-1m|PATH",
                        help=f"data set (repeatable); default: {' and '.join(DEFAULT_DATA)}")
    parser.add_argument("--models", default="all",
                        help=f"comma-separated model names or 'all' (registered: {','.join(available_models())})")
    parser.add_argument("--out", type=Path, help="JSON results file; charts are written next to it as PNG")
    parser.add_argument("--quick", action="store_true",
                        help=f"first {QUICK_USERS} users only, short MF training: a smoke run")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming replay")
    parser.add_argument("--ks", default="5,10,20,50", help="cut-offs, comma-separated (10 is always included)")
    parser.add_argument("--data-dir", type=Path, help="folder holding ml-100k/ and ml-1m/ (default $STREAMREC_DATA_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    models = "all" if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    run(
        data=args.data or DEFAULT_DATA, models=models, out=args.out, quick=args.quick,
        streaming=not args.no_streaming, ks=[int(k) for k in args.ks.split(",")], data_dir=args.data_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
