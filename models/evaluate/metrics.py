"""Top-K ranking metrics, vectorised over users.

Every function takes ``hits``: bool (n_users, K), ``hits[u, r]`` true when
the item at rank r (0 = best) of user u's list is relevant, and
``n_relevant``: int (n_users,), how many relevant items the user has (in the
whole catalogue, not just the list). Results are float64 (n_users,).
"""

from __future__ import annotations

import numpy as np


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-d (n_users, K), got shape {hits.shape}")
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"k={k} must be in 1..{hits.shape[1]}")
    return hits[:, :k].astype(bool)


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1.0 when any relevant item is in the top k."""
    return _check(hits, k).any(axis=1).astype(np.float64)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Relevant items in the top k / all relevant items (0 for users with none)."""
    found = _check(hits, k).sum(axis=1)
    n = np.asarray(n_relevant, dtype=np.float64)
    return np.divide(found, n, out=np.zeros(len(n)), where=n > 0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG with gain 1 / log2(rank + 2), over the ideal DCG of min(n_relevant, k) hits."""
    h = _check(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (h * discounts).sum(axis=1)
    ideal_n = np.minimum(np.asarray(n_relevant, dtype=np.int64), k)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_n]
    return np.divide(dcg, idcg, out=np.zeros(len(dcg)), where=idcg > 0)


def mrr(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / (rank + 1) of the first relevant item in the top k, else 0."""
    h = _check(hits, k)
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def coverage(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top k."""
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    return float(len(np.unique(top_items[:, :k])) / n_items)
