"""The two-tower training loop: seq-to-seq over user histories, early stopping on validation NDCG@k.

Runs on one process or under ``torchrun`` (DistributedDataParallel; gloo on
CPU, NCCL on CUDA): when ``torch.distributed`` is initialised every rank trains
on its share of each epoch's windows and all ranks take the same decisions.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from models.data.dataset import IdMap, Interactions, Split
from models.features.content import Featurizer, dense_features, fit_featurizer
from models.towers.model import TwoTower
from models.train.config import TrainConfig
from models.train.data import epoch_batches, item_probabilities, make_windows, shard_batches
from models.train.losses import bce_loss, full_softmax_loss, in_batch_log_q, sampled_softmax_loss
from models.train.metrics import rank_metrics

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained two-tower model with what scoring and export need.

    ``histories``: per user index, chronological item indices known at the end
    of training (train + validation), the input of :meth:`user_vectors`.
    ``item_embeddings``: float32 (n_items, dim), row = item index.
    """

    config: TrainConfig
    model: TwoTower
    users: IdMap
    items: IdMap
    histories: list[np.ndarray]
    item_embeddings: np.ndarray
    featurizer: Featurizer | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None  # set when the time budget stopped training: resume with it

    def fold_in(self, history: Interactions) -> None:
        """Use ``history``'s per-user sequences (same id maps) as the users' histories from now on."""
        self.histories = history.sequences()

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """float32 (len(users), dim) for user indices (int64)."""
        return self.model.user_vectors([self.histories[int(u)] for u in users])

    def score(self, users: np.ndarray) -> np.ndarray:
        """float32 (len(users), n_items): dot products of user and item vectors."""
        return (self.user_vectors(users) @ self.item_embeddings.T).astype(np.float32)


@dataclass
class Checkpoint:
    """Where a run stopped by its time budget was: resume it with ``fit_sequences(..., resume=checkpoint)``.

    The last weights and the optimizer's state (not the best epoch's), so a paused
    and resumed run trains as one run would; plus the best epoch so far.
    """

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    best: dict[str, Any]
    history: list[dict[str, float]]
    epoch_seconds: list[float]
    next_epoch: int
    step: int
    bad_epochs: int
    seconds: float
    rng: torch.Tensor | None = None  # torch's CPU generator (dropout) where the run stopped


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable state; the content features (a constant buffer, often the largest) are left out."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(CONTENT_BUFFER)}


CONTENT_BUFFER = "item_tower.content"


def _load_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(CONTENT_BUFFER)]
    if missing or result.unexpected_keys:
        raise ValueError(f"weights do not fit the model: missing={missing} unexpected={result.unexpected_keys}")


class TrainTask(nn.Module):
    """The model plus its loss: ``forward(inputs, targets)`` returns the scalar loss (what DDP wraps)."""

    def __init__(self, model: TwoTower, loss: str, item_prob: torch.Tensor, n_negatives: int = 1) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.n_negatives = n_negatives
        self.register_buffer("item_prob", item_prob, persistent=False)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seq = self.model.user_tower.forward_sequence(inputs)
        mask = targets > 0
        query = seq[mask]
        target = targets[mask] - 1
        items = self.model.item_tower
        if self.loss == "full_softmax":
            return full_softmax_loss(query, items.all_items(), target)
        if self.loss == "sampled_softmax":
            uniq, inverse = torch.unique(target, return_inverse=True)
            log_q = in_batch_log_q(self.item_prob[uniq], n_draws=int(target.numel()))
            return sampled_softmax_loss(query, items(uniq + 1), inverse, log_q)
        neg = torch.randint(1, items.n_items + 1, (target.numel(), self.n_negatives), device=target.device)
        return bce_loss(query, items(target + 1), items(neg))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; prefer deterministic kernels where that is cheap."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA (this rank's local GPU under torchrun) when present, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_two_tower(split: Split, config: TrainConfig, init: Callable[[TwoTower], Any] | None = None,
                    resume: Checkpoint | None = None) -> TrainedModel:
    """Train on ``split.train``, stop early on ``split.valid`` (NDCG@``eval_k``, full ranking, train items excluded).

    ``init(model)``, when given, sets the freshly built model's weights before
    training (a warm start from a previous version: :func:`models.train.warm.warm_start_from`).
    ``resume``: the :attr:`TrainedModel.checkpoint` of an earlier call with the same
    split and config but its time budget, which goes on where that call stopped.

    The returned model's histories are the training sequences; call
    :meth:`TrainedModel.fold_in` with train + validation before scoring test rows.
    """
    train, valid = split.train, split.valid
    featurizer = fit_featurizer(split.catalog, config.content, seed=config.seed)
    content = dense_features(featurizer, split.catalog.documents()) if featurizer is not None else None
    train_seqs = train.sequences()
    valid_users = valid.user
    trained = fit_sequences(
        train_seqs,
        n_items=train.n_items,
        valid_histories=[train_seqs[u] for u in valid_users],
        valid_targets=valid.item,
        valid_exclude=train.matrix(binary=True)[valid_users],
        content=content,
        config=config,
        init=init,
        resume=resume,
    )
    trained.users, trained.items, trained.featurizer = train.users, train.items, featurizer
    return trained


def fit_sequences(
    sequences: list[np.ndarray],
    n_items: int,
    valid_histories: list[np.ndarray],
    valid_targets: np.ndarray,
    valid_exclude: sp.csr_matrix | None,
    content: np.ndarray | None,
    config: TrainConfig,
    init: Callable[[TwoTower], Any] | None = None,
    resume: Checkpoint | None = None,
    sharded: bool = False,
) -> TrainedModel:
    """The loop on plain arrays: per-user chronological item indices in, a :class:`TrainedModel` out.

    ``sharded`` (under ``torch.distributed``): ``sequences`` are this rank's own users
    (a disjoint shard, :mod:`models.train.sharded`), not every rank's same data; item
    counts and sampling probabilities are then summed over the ranks, and each rank
    steps through its own rows (:func:`models.train.data.shard_batches`).
    """
    seed_everything(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    rank, world = _dist()
    device = resolve_device(config.device)
    n_features = 0 if content is None else int(content.shape[1])
    model = TwoTower(config.tower_spec(n_items, n_features), content)
    if resume is not None:
        _load_weights(model, resume.weights)
    elif init is not None:
        init(model)
    sharded = sharded and world > 1
    counts = np.bincount(np.concatenate(sequences), minlength=n_items)[:n_items] if sequences else None
    if sharded:
        counts = _summed(np.zeros(n_items, dtype=np.int64) if counts is None else counts, device)
    if counts is not None:
        model.item_tower.set_id_counts(counts)
    model = model.to(device)
    inputs, targets = make_windows(sequences, config.max_len, config.windows)
    if len(inputs) == 0:
        raise ValueError("no training windows: every sequence is shorter than 2 items")
    item_prob = item_probabilities(targets, n_items)
    n_batches = 0
    if sharded:
        target_counts = _summed(np.bincount(targets[targets > 0] - 1, minlength=n_items), device)
        item_prob = torch.as_tensor(target_counts / max(target_counts.sum(), 1), dtype=torch.float32)
        local = max(1, config.batch_size // world)
        n_batches = int(_summed(np.array([-(-len(inputs) // local)]), device, op=dist.ReduceOp.MAX)[0])
    task: nn.Module = TrainTask(model, config.loss, item_prob, config.n_negatives).to(device)
    if world > 1:
        task = nn.parallel.DistributedDataParallel(task)
    opt = torch.optim.Adam(task.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if resume is not None:
        opt.load_state_dict(resume.optimizer)
        if resume.rng is not None:
            torch.set_rng_state(resume.rng)
    log.info(
        "train_start tower=%s loss=%s windows=%d items=%d params=%d device=%s world=%d",
        config.tower, config.loss, len(inputs), n_items, sum(p.numel() for p in model.parameters()), device, world,
    )
    best: dict[str, Any] = {"ndcg": -1.0, "epoch": -1, "state": None, "metrics": {}}
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    step, bad_epochs, first_epoch, earlier_s = 0, 0, 0, 0.0
    if resume is not None:
        best, history, epoch_seconds = dict(resume.best), list(resume.history), list(resume.epoch_seconds)
        step, bad_epochs, first_epoch, earlier_s = resume.step, resume.bad_epochs, resume.next_epoch, resume.seconds
    started = time.perf_counter()
    out_of_time = False
    stopped_at = first_epoch
    for epoch in range(first_epoch, config.epochs):
        stopped_at = epoch + 1
        task.train()
        t0 = time.perf_counter()
        batches = (shard_batches(len(inputs), config.batch_size, n_batches, epoch, config.seed, rank, world)
                   if sharded else epoch_batches(len(inputs), config.batch_size, epoch, config.seed, rank, world))
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not config.progress or rank != 0)
        for rows in bar:
            x = torch.as_tensor(inputs[rows], device=device)
            y = torch.as_tensor(targets[rows], device=device)
            loss = task(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            count += 1
            step += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
            if config.max_steps is not None and step >= config.max_steps:
                break
            # One process may stop mid-epoch; ranks check at the epoch's end only, so
            # their collective calls stay matched.
            if world == 1 and _over(config.time_budget_s, started):
                out_of_time = True  # validate what this epoch learnt so far, then stop
                break
        if world > 1 and config.time_budget_s is not None:
            t = torch.tensor([float(_over(config.time_budget_s, started))], device=device)
            dist.all_reduce(t)  # one rank out of time stops them all
            out_of_time = bool(t.item() > 0)
        epoch_seconds.append(time.perf_counter() - t0)
        valid = _validate(model, valid_histories, valid_targets, valid_exclude, config.eval_k)
        ndcg = valid[f"ndcg@{config.eval_k}"]
        if world > 1:
            # Weights are identical on every rank; averaging only guards against float noise in the decision.
            t = torch.tensor([ndcg], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            ndcg = float(t.item()) / world
        row = {"epoch": epoch, "loss": total / max(count, 1), "seconds": epoch_seconds[-1], **valid}
        history.append(row)
        log.info(
            "epoch=%d loss=%.4f valid_hr@%d=%.4f valid_ndcg@%d=%.4f seconds=%.1f",
            epoch, row["loss"], config.eval_k, valid[f"hr@{config.eval_k}"], config.eval_k, ndcg, epoch_seconds[-1],
        )
        if ndcg > best["ndcg"]:
            best = {"ndcg": ndcg, "epoch": epoch, "state": _weights(model), "metrics": valid}
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bad_epochs >= config.patience or (config.max_steps is not None and step >= config.max_steps):
            break
        if out_of_time:
            log.info("train_out_of_time budget_s=%.0f epoch=%d", config.time_budget_s, epoch)
            break
    checkpoint = None
    if out_of_time and world == 1 and stopped_at < config.epochs:
        checkpoint = Checkpoint(weights=_weights(model), optimizer=copy.deepcopy(opt.state_dict()), best=best,
                                history=history, epoch_seconds=epoch_seconds, next_epoch=stopped_at, step=step,
                                bad_epochs=bad_epochs, seconds=earlier_s + time.perf_counter() - started,
                                rng=torch.get_rng_state())
    if best["state"] is not None:
        _load_weights(model, best["state"])
    model.eval()
    in_sync = _ranks_in_sync(model, device) if world > 1 else True
    metrics = {
        "best_epoch": best["epoch"],
        "valid": best["metrics"],
        "epochs_run": len(history),
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else 0.0,
        "history": history,
        "world_size": world,
        "sharded": sharded,
        "ranks_in_sync": in_sync,
        "steps": step,
        "out_of_time": out_of_time,
        "train_seconds": earlier_s + time.perf_counter() - started,
    }
    log.info("train_done best_epoch=%d valid_ndcg@%d=%.4f", best["epoch"], config.eval_k, best["ndcg"])
    return TrainedModel(
        config=config, model=model, users=IdMap(()), items=IdMap(()), histories=list(sequences),
        item_embeddings=model.item_vectors(), metrics=metrics, checkpoint=checkpoint,
    )


def _summed(values: np.ndarray, device: torch.device, op: Any = None) -> np.ndarray:
    """``values`` (int64) reduced over the ranks (a sum unless ``op``)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op is None else op)
    return t.cpu().numpy()


def _over(budget_s: float | None, started: float) -> bool:
    return budget_s is not None and time.perf_counter() - started >= budget_s


def _ranks_in_sync(model: nn.Module, device: torch.device) -> bool:
    """Whether every rank holds the same weights (DDP keeps them equal; this checks it)."""
    fingerprint = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(device)
    gathered = [torch.zeros_like(fingerprint) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fingerprint)
    in_sync = all(bool(torch.equal(g, gathered[0])) for g in gathered)
    if not in_sync:
        log.error("ranks_out_of_sync fingerprints=%s", [float(g) for g in gathered])
    return in_sync


def _validate(
    model: TwoTower, histories: list[np.ndarray], targets: np.ndarray, exclude: sp.csr_matrix | None, k: int
) -> dict[str, float]:
    users = model.user_vectors(histories)
    return rank_metrics(users, model.item_vectors(), np.asarray(targets, dtype=np.int64), exclude, k)


__all__ = ["Checkpoint", "TrainTask", "TrainedModel", "fit_sequences", "resolve_device", "seed_everything", "train_two_tower"]
