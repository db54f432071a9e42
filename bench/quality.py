"""Offline quality of the baselines (and any registered model) on MovieLens, YOOCHOOSE and Taobao.

Protocol: chronological leave-one-out (each user's last interaction is the
test item, the one before validation; equal timestamps keep source order;
users with fewer than 3 interactions are left out of the test), full ranking
over all items with the user's training and validation items excluded, @10.
For yoochoose-100k also the session protocol (session-rec): fit on the train
file, predict every click of the last day's sessions from the clicks before it,
full ranking, nothing excluded, HR@20 / MRR@20 / NDCG@20 over predictions.
Also replays ml-100k in time order through an online item-kNN (prequential
HR@10 / NDCG@10) next to a batch item-kNN frozen at the warm-up cut-off.
A data set whose folder is absent is skipped with a message.

    python bench/quality.py                    # all four data sets, all models
    python bench/quality.py --quick            # small slice, seconds
    python bench/quality.py --data ml-100k --models pop,itemknn --out bench/results/q.json
    python bench/quality.py --data yoochoose-100k --models pop,itemknn,two_tower_mean
    python bench/quality.py --data taobao --no-streaming
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
from models.data.loaders import FOLDERS, default_data_dir  # noqa: E402
from models.evaluate.registry import available_models, make_model  # noqa: E402
from models.evaluate.report import load_split, run_report  # noqa: E402
from models.evaluate.session import has_session_split, run_session_report, session_split  # noqa: E402
from models.evaluate.streaming import format_windows, replay  # noqa: E402

log = logging.getLogger("bench.quality")

DEFAULT_DATA = ("ml-100k", "ml-1m", "yoochoose-100k", "taobao")
QUICK_USERS = 150
QUICK_SESSIONS = 300  # test sessions of the session protocol in --quick (training keeps the whole train file)
QUICK_MODEL_OPTIONS = {"bpr": {"iterations": 10}, "als": {"iterations": 3},
                       **{f"two_tower_{t}": {"epochs": 2, "patience": 1} for t in ("mean", "gru", "cnn", "sasrec")}}
# Any other model gets whichever of these its factory accepts (see quick_options).
QUICK_FALLBACK_OPTIONS = {"epochs": 2, "patience": 1, "iterations": 3, "time_budget_s": 60.0}
# The streaming replay's kNN models hold dense (n_items x n_items) float32 matrices: taobao's
# 55,368 items would need 12 GB each, so it replays only data sets up to this many items.
STREAMING_MAX_ITEMS = 20_000


def run(
    data: Sequence[str] = DEFAULT_DATA,
    models: list[str] | str = "all",
    out: Path | None = None,
    quick: bool = False,
    streaming: bool = True,
    ks: Sequence[int] = (5, 10, 20, 50),
    data_dir: Path | None = None,
    session_protocol: bool = True,
    tower_budget_s: float | None = None,
    auto_budget_s: float | None = None,
) -> dict[str, Any]:
    """One report per data set, the session protocol where the data set has one, the streaming replay.

    Returns ``{"quick", "reports": {name: run_report's dict}, "sessions": {name:
    run_session_report's dict}, "streaming", "skipped": {name: why}}``.
    """
    results: dict[str, Any] = {"quick": quick, "reports": {}, "sessions": {}, "streaming": None, "skipped": {}}
    options: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    names = available_models() if models == "all" else list(models)
    model_options = quick_options(names) if quick else budget_options(names, tower_budget_s, auto_budget_s)
    results["budgets"] = {"tower_s": tower_budget_s, "auto_s": auto_budget_s}
    loaded: list[str] = []
    for name in data:
        missing = absent_folder(name, data_dir)
        if missing is not None:
            results["skipped"][name] = f"no folder {missing}"
            print(f"{name}: skipped, no folder {missing}\n")
            continue
        loaded.append(name)
        split = load_split(name, max_users=QUICK_USERS if quick else None, **options)
        png = out.with_name(f"{out.stem}-{Path(name).name}.png") if out else None
        results["reports"][split.name or name] = run_report(
            split.name or name, names, out_json=None, out_png=png, ks=ks, split=split,
            model_options=model_options, progress=not quick,
        )
        if session_protocol and has_session_split(name, data_dir):
            sessions = session_split(name, data_dir, max_sessions=QUICK_SESSIONS if quick else None)
            print()
            results["sessions"][sessions.name] = run_session_report(
                names, sessions, model_options=model_options, progress=not quick)
        print()
    if streaming and loaded:
        results["streaming"] = streaming_replay("ml-100k" if "ml-100k" in loaded else loaded[0], quick, options)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
        log.info("wrote path=%s", out)
    return results


def streaming_replay(name: str, quick: bool, options: dict[str, Any]) -> dict[str, Any] | None:
    """Replay ``name`` through the online and batch item-kNN; None (with a message) when too many items."""
    interactions, catalog = load_dataset(name, max_users=QUICK_USERS if quick else None, **options)
    if interactions.n_items > STREAMING_MAX_ITEMS:
        print(f"{name}: streaming replay skipped, {interactions.n_items:,} items > {STREAMING_MAX_ITEMS:,} "
              "(its kNN models are dense item x item)")
        return None
    res = replay(interactions, catalog, progress=not quick)
    res["dataset"] = name
    print(f"{name}: streaming replay, {res['protocol']['scored_events']} scored events after a "
          f"{res['protocol']['warmup_fraction']:.0%} warm-up")
    print(format_windows(res))
    return res


def absent_folder(name: str, data_dir: Path | None) -> Path | None:
    """The folder of a named data set (or the path given) when it does not exist, else None."""
    if name == "demo":
        return None
    folder = (data_dir or default_data_dir()) / FOLDERS[name] if name in FOLDERS else Path(name)
    return None if folder.exists() else folder


def quick_options(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Short-training options per model name, for ``--quick``.

    ``QUICK_MODEL_OPTIONS`` where listed, else the options of ``QUICK_FALLBACK_OPTIONS``
    that the model's factory accepts (one it refuses with ``TypeError`` is left out).
    """
    return {name: accepted_options(name, QUICK_MODEL_OPTIONS.get(name, QUICK_FALLBACK_OPTIONS)) for name in names}


def budget_options(names: Sequence[str], tower_s: float | None, auto_s: float | None) -> dict[str, dict[str, Any]]:
    """``time_budget_s`` for each model that takes one: ``auto_s`` for ``auto``, ``tower_s`` for the rest."""
    out = {}
    for name in names:
        budget = auto_s if name == "auto" else tower_s
        if budget is not None:
            out[name] = accepted_options(name, {"time_budget_s": budget})
    return out


def accepted_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``make_model(name, ...)`` accepts (models are only built, not fitted)."""
    try:
        make_model(name, **options)
        return dict(options)
    except TypeError:
        pass
    kept = {}
    for key, value in options.items():
        try:
            make_model(name, **{key: value})
        except TypeError:
            continue
        kept[key] = value
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", metavar="ml-100k|ml-1m|yoochoose-100k|taobao|PATH",
                        help=f"data set (repeatable): --data yoochoose-100k, --data taobao, ...; "
                             f"default: {', '.join(DEFAULT_DATA)} (each skipped when its folder is absent)")
    parser.add_argument("--models", default="all",
                        help=f"comma-separated model names or 'all' (registered: {','.join(available_models())})")
    parser.add_argument("--out", type=Path, help="JSON results file; charts are written next to it as PNG")
    parser.add_argument("--quick", action="store_true",
                        help=f"first {QUICK_USERS} users only (session protocol: first {QUICK_SESSIONS} "
                             "test sessions), short training: a smoke run")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming replay")
    parser.add_argument("--session-protocol", action=argparse.BooleanOptionalAction, default=True,
                        help="for yoochoose-100k also the session protocol table (HR@20, MRR@20, NDCG@20)")
    parser.add_argument("--ks", default="5,10,20,50", help="cut-offs, comma-separated (10 is always included)")
    parser.add_argument("--data-dir", type=Path,
                        help="folder holding ml-100k/, ml-1m/, yoochoose-100k/, taobao-userbehavior-sample/ "
                             "(default $STREAMREC_DATASETS_DIR, else ../shared/data)")
    parser.add_argument("--tower-budget", type=float, default=600.0, metavar="S",
                        help="training seconds of each two-tower model (best epoch kept; 0: no limit)")
    parser.add_argument("--auto-budget", type=float, default=900.0, metavar="S",
                        help="seconds of the automatic choice ('auto'), the trainer's default")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    models = "all" if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    run(
        data=args.data or DEFAULT_DATA, models=models, out=args.out, quick=args.quick,
        streaming=not args.no_streaming, ks=[int(k) for k in args.ks.split(",")], data_dir=args.data_dir,
        session_protocol=args.session_protocol, tower_budget_s=args.tower_budget or None,
        auto_budget_s=args.auto_budget or None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
