"""Launch :mod:`models.train.cli` on several processes with DistributedDataParallel.

    python -m models.train.ddp --nproc 2 -- --dataset demo --tower gru

A thin wrapper over ``torchrun --standalone --nproc-per-node N -m models.train.cli``
(gloo on CPU, NCCL when CUDA is present; chosen by the CLI).
"""

from __future__ import annotations

import argparse
import sys

from torch.distributed.run import main as torchrun_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="python -m models.train.ddp", description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes on this machine")
    args = p.parse_args(argv)
    if args.nproc < 1:
        p.error("--nproc must be >= 1")
    torchrun_main(["--standalone", "--nproc-per-node", str(args.nproc), "-m", "models.train.cli", *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
