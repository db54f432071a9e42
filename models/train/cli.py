"""Command line: train a two-tower model on a data set and write an artifact.

    python -m models.train.cli --dataset ml-100k --tower sasrec --out artifacts/
    torchrun --nproc-per-node 2 -m models.train.cli --dataset demo ...   # DDP (gloo on CPU)

Every :class:`TrainConfig` field is an option (``--max-len``, ``--loss``, ...; see
:mod:`models.train.options`), with TrainConfig's library defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import torch.distributed as dist

from models.data.dataset import leave_last_out, load_dataset
from models.train.config import TrainConfig
from models.train.options import add_argparse_options, config_from_options

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m models.train.cli", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo", help="ml-100k, ml-1m, demo or a path")
    p.add_argument("--demo-users", type=int, default=1000)
    p.add_argument("--demo-items", type=int, default=500)
    p.add_argument("--out", type=Path, default=None, help="artifact root; a new version folder is written there")
    p.add_argument("--version", default=None)
    p.add_argument("--metrics-out", type=Path, default=None, help="write the training metrics JSON here (rank 0)")
    p.add_argument("--log-level", default="INFO")
    add_argparse_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = config_from_options(vars(args))
    except ValueError as e:
        build_parser().error(str(e))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        from models.train.sharded import backend_for

        # NCCL only when every rank on this node has a GPU of its own; else every rank on the CPU.
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        backend = backend_for(config, local_ranks)
        if backend == "gloo" and config.device == "auto":
            config = dataclasses.replace(config, device="cpu")
        dist.init_process_group(backend=backend)
    try:
        return _run(args, config)
    finally:
        if distributed:
            dist.destroy_process_group()


def _run(args: argparse.Namespace, config: TrainConfig) -> int:
    # Imported late so ``--help`` stays fast.
    from models.artifacts import save_artifact
    from models.train.loop import train_two_tower

    options = {"n_users": args.demo_users, "n_items": args.demo_items} if args.dataset == "demo" else {}
    interactions, catalog = load_dataset(args.dataset, **options)
    split = leave_last_out(interactions, catalog, name=args.dataset)
    trained = train_two_tower(split, config)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        trained.fold_in(split.train.concat(split.valid))
        metrics = {k: v for k, v in trained.metrics.items() if k != "history"}
        log.info("metrics %s", json.dumps(metrics, sort_keys=True))
        if args.metrics_out is not None:
            args.metrics_out.parent.mkdir(parents=True, exist_ok=True)
            args.metrics_out.write_text(json.dumps(trained.metrics, indent=1, sort_keys=True), encoding="utf-8")
        if args.out is not None:
            path = save_artifact(trained, args.out, version=args.version)
            print(path)
    return 0 if trained.metrics.get("ranks_in_sync", True) else 1


if __name__ == "__main__":
    sys.exit(main())
