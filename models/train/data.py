"""Training windows and validation sets built from per-user item sequences."""

from __future__ import annotations

import numpy as np
import torch


def make_windows(sequences: list[np.ndarray], max_len: int, mode: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Sequence-to-sequence windows: (inputs, targets), each int64 (n_windows, max_len).

    Tokens are ``item index + 1``, left-padded with 0. ``targets[:, t]`` is the
    item that followed ``inputs[:, t]`` (0 where there is none). ``mode="all"``
    cuts each sequence from its end into windows of ``max_len + 1`` items that
    overlap by one, so each position is a target exactly once; ``"last"`` keeps
    only the most recent window. Sequences shorter than 2 give no window.
    """
    if mode not in ("all", "last"):
        raise ValueError(f"mode must be 'all' or 'last', got {mode!r}")
    chunks: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            chunks.append(seq[start:end])
            if mode == "last":
                break
            end = start + 1
    inputs = np.zeros((len(chunks), max_len), dtype=np.int64)
    targets = np.zeros((len(chunks), max_len), dtype=np.int64)
    for r, c in enumerate(chunks):
        n = len(c) - 1
        inputs[r, max_len - n :] = c[:-1] + 1
        targets[r, max_len - n :] = c[1:] + 1
    return inputs, targets


def epoch_batches(
    n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1
) -> list[np.ndarray]:
    """This rank's row batches for one epoch: a seeded shuffle shared by all ranks.

    Every rank gets the same number of batches (rows wrap around as in
    ``DistributedSampler``) so DDP's collective calls stay matched.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    per_rank = -(-n // world)
    if per_rank * world > n:
        perm = np.concatenate([perm, perm[: per_rank * world - n]])
    mine = perm[rank::world]
    local = max(1, batch_size // world)
    return [mine[i : i + local] for i in range(0, len(mine), local)]


def item_probabilities(targets: np.ndarray, n_items: int) -> torch.Tensor:
    """Share of training targets per item: float32 (n_items,), from target tokens (0 ignored)."""
    counts = np.bincount(targets[targets > 0] - 1, minlength=n_items).astype(np.float64)
    return torch.as_tensor(counts / max(counts.sum(), 1.0), dtype=torch.float32)


def shard_batches(n: int, batch_size: int, n_batches: int, epoch: int, seed: int, rank: int,
                  world: int) -> list[np.ndarray]:
    """This rank's ``n_batches`` row batches of its own ``n`` rows (a disjoint shard of the data).

    Each batch holds ``batch_size // world`` rows, so the ranks together step on
    ``batch_size`` rows as one process would; a rank with fewer rows than
    ``n_batches`` batches need wraps around its shuffle, so every rank takes the
    same number of steps and DDP's collective calls stay matched.
    """
    local = max(1, batch_size // world)
    if n == 0:
        raise ValueError(f"rank {rank} has no training rows")
    rng = np.random.default_rng([seed, epoch, rank])
    need = n_batches * local
    perm = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]
    return [perm[i : i + local] for i in range(0, need, local)]
