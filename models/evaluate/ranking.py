"""Full-ranking offline evaluation: every item is a candidate, no sampled negatives."""

from __future__ import annotations

import logging
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from models.base import Recommender, mask_rows, top_k
from models.data.dataset import Interactions, Split
from models.errors import ModelsError
from models.evaluate import metrics

log = logging.getLogger(__name__)

DEFAULT_KS = (5, 10, 20, 50)


class EvaluationError(ModelsError):
    """A model returned scores of the wrong shape, or the split cannot be evaluated."""


def _binary(inter: Interactions) -> sp.csr_matrix:
    return inter.matrix(binary=True)


def evaluate(
    model: Recommender,
    split: Split,
    on: Literal["valid", "test"] = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, float]:
    """Recall / NDCG / HR / MRR / item coverage at each k, averaged over users with a target.

    Each user's training items are excluded from the ranking, and for ``on="test"``
    the validation item too. Returns ``{"recall@10": ..., "ndcg@10": ...,
    "hr@10": ..., "mrr@10": ..., "coverage@10": ..., "n_users": ...}``.
    """
    if on not in ("valid", "test"):
        raise ValueError(f"on must be 'valid' or 'test', got {on!r}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive, got {ks}")
    target_inter = split.test if on == "test" else split.valid
    targets = _binary(target_inter)
    exclude = _binary(split.train)
    if on == "test":
        exclude = exclude + _binary(split.valid)
    n_items = targets.shape[1]
    users = np.flatnonzero(np.diff(targets.indptr) > 0).astype(np.int64)
    if len(users) == 0:
        raise EvaluationError(f"no users with a {on} item")
    k_max = min(max(ks), n_items)
    hits = np.zeros((len(users), k_max), dtype=bool)
    tops = np.zeros((len(users), k_max), dtype=np.int64)
    starts = range(0, len(users), batch_size)
    for start in tqdm(starts, desc=f"eval {model.name}", disable=not progress, leave=False):
        batch = users[start:start + batch_size]
        scores = np.array(model.score(batch), dtype=np.float32, copy=True)
        if scores.shape != (len(batch), n_items):
            raise EvaluationError(f"{model.name}: score returned {scores.shape}, expected {(len(batch), n_items)}")
        # NaN would sort unpredictably; rank it last.
        scores[np.isnan(scores)] = -np.inf
        mask_rows(scores, exclude[batch])
        top = top_k(scores, k_max)
        tops[start:start + len(batch)] = top
        hits[start:start + len(batch)] = np.take_along_axis(targets[batch].toarray() > 0, top, axis=1)
    n_relevant = np.diff(targets.indptr)[users]
    out: dict[str, float] = {"n_users": float(len(users))}
    for k in ks:
        kk = min(k, k_max)
        out[f"recall@{k}"] = float(metrics.recall(hits, n_relevant, kk).mean())
        out[f"ndcg@{k}"] = float(metrics.ndcg(hits, n_relevant, kk).mean())
        out[f"hr@{k}"] = float(metrics.hit_rate(hits, kk).mean())
        out[f"mrr@{k}"] = float(metrics.mrr(hits, kk).mean())
        out[f"coverage@{k}"] = metrics.coverage(tops, n_items, kk)
    log.info("evaluated model=%s on=%s users=%d %s", model.name, on, len(users),
             " ".join(f"{m}@{k}={out[f'{m}@{k}']:.4f}" for k in ks[:2] for m in ("hr", "ndcg")))
    return out
