"""Two-tower benchmark: quality next to the baselines in one report, and training time per epoch.

    python -m models.train.bench quality --data ml-100k --towers sasrec,gru,cnn,mean --out bench/results/tt-ml-100k.json
    python -m models.train.bench epoch-time --data ml-1m --epochs 2 --out bench/results/tt-epoch-ml-1m.json

``quality`` runs the baselines and the two-tower models (plus the ranker over
the first tower's candidates) on the same leave-last-out split, one report.
``epoch-time`` trains each tower for a few epochs and records seconds per epoch
(the first epoch is reported apart as warm-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from models.evaluate.report import load_split, run_report
from models.ranker import RankedTwoTower
from models.train.config import TrainConfig
from models.train.loop import train_two_tower
from models.train.recommender import REPORT_DEFAULTS, TwoTowerRecommender

BASELINES = ("pop", "itemknn", "userknn", "content", "bpr", "als")


def quality(data: str, towers: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {
        f"two_tower_{t}": TwoTowerRecommender(TrainConfig(**{**REPORT_DEFAULTS, "tower": t, **overrides}))
        for t in towers
    }
    first = extra[f"two_tower_{towers[0]}"]
    extra[f"two_tower_{towers[0]}+ranker"] = RankedTwoTower(base=first)
    report = run_report(data, list(BASELINES), extra_models=extra, progress=False)
    report["two_tower_training"] = {
        name: {k: v for k, v in m.trained.metrics.items() if k != "history"}
        for name, m in extra.items() if isinstance(m, TwoTowerRecommender)
    }
    report["ranker"] = extra[f"two_tower_{towers[0]}+ranker"].metrics
    return report


def epoch_time(data: str, towers: list[str], epochs: int, overrides: dict[str, Any]) -> dict[str, Any]:
    split = load_split(data)
    out: dict[str, Any] = {}
    for t in towers:
        cfg = TrainConfig(**{**REPORT_DEFAULTS, "tower": t, "epochs": epochs, "patience": epochs, **overrides})
        metrics = train_two_tower(split, cfg).metrics
        secs = [h["seconds"] for h in metrics["history"]]
        out[t] = {"first_epoch_s": secs[0], "epoch_s": secs[1:] or secs}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.train.bench")
    p.add_argument("what", choices=("quality", "epoch-time"))
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--towers", default="sasrec,gru,cnn,mean")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", default="{}", help="JSON of TrainConfig overrides")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    towers = args.towers.split(",")
    overrides = json.loads(args.set)
    t0 = time.perf_counter()
    if args.what == "quality":
        result = quality(args.data, towers, overrides)
    else:
        result = {"epoch_time": epoch_time(args.data, towers, args.epochs, overrides)}
    result["bench"] = {"what": args.what, "data": args.data, "threads": args.threads, "overrides": overrides,
                       "wall_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
                       "machine": platform.platform(), "processor": platform.processor() or platform.machine()}
    text = json.dumps(result, indent=1, default=float)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
