"""Neighbourhood models: item-item and user-user cosine similarity on the interaction matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.base import NotFittedError, Recommender, train_of
from models.data.dataset import Interactions, ItemCatalog, Split


def cosine_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay zero), float32 CSR."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ m, dtype=np.float32)


def keep_top_k(sim: np.ndarray, k: int | None, axis: int) -> np.ndarray:
    """Zero all but the ``k`` largest entries along ``axis`` of a dense similarity (in place)."""
    if k is None or k >= sim.shape[axis]:
        return sim
    if axis == 0:
        sim = sim.T
    drop = np.argpartition(-sim, k, axis=1)[:, k:]
    np.put_along_axis(sim, drop, 0.0, axis=1)
    return sim.T if axis == 0 else sim


class ItemKNN(Recommender):
    """Item-item cosine kNN: score(u, j) = sum of sim(i, j) over the user's items i.

    ``k``: neighbours kept per target item j (None: all). ``binary``: use 0/1
    interactions rather than weights. Memory: a dense (n_items, n_items) float32.
    """

    name = "itemknn"
    kind = "baseline"

    def __init__(self, k: int | None = None, binary: bool = True) -> None:
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1 or None, got {k}")
        self.k, self.binary = k, binary
        self._x: sp.csr_matrix | None = None
        self._sim: np.ndarray | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> ItemKNN:
        x = train_of(split_or_train).matrix(binary=self.binary)
        xt = cosine_rows(x.T.tocsr())  # item vectors over users
        sim = (xt @ xt.T).toarray().astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        # Column j holds the neighbours of target item j.
        self._sim = keep_top_k(sim, self.k, axis=0)
        self._x = x
        return self

    @property
    def similarity(self) -> np.ndarray | None:
        """Item-item cosine, float32 (n_items, n_items), column j = neighbours of j; None before fit."""
        return self._sim

    def fold_in(self, history: Interactions) -> None:
        """Score from ``history``; the similarities stay those learnt in ``fit``."""
        self._x = history.matrix(binary=self.binary)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._x is None or self._sim is None:
            raise NotFittedError(f"{self.name}: fit first")
        return np.asarray(self._x[users] @ self._sim, dtype=np.float32)


class UserKNN(Recommender):
    """User-user cosine kNN: score(u, j) = sum of sim(u, v) over the ``k`` most similar users v who had j."""

    name = "userknn"
    kind = "baseline"

    def __init__(self, k: int | None = 100, binary: bool = True) -> None:
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1 or None, got {k}")
        self.k, self.binary = k, binary
        self._x: sp.csr_matrix | None = None
        self._xn: sp.csr_matrix | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> UserKNN:
        self._x = train_of(split_or_train).matrix(binary=self.binary)
        self._xn = cosine_rows(self._x)
        return self

    def fold_in(self, history: Interactions) -> None:
        """Neighbours and their items come from ``history`` (user-kNN has no trained parameters)."""
        self._x = history.matrix(binary=self.binary)
        self._xn = cosine_rows(self._x)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._x is None or self._xn is None:
            raise NotFittedError(f"{self.name}: fit first")
        # Similarities for this batch only: the full user-user matrix need not fit in memory.
        sim = (self._xn[users] @ self._xn.T).toarray()
        sim[np.arange(len(users)), users] = 0.0
        sim = keep_top_k(sim, self.k, axis=1)
        return np.ascontiguousarray((self._x.T @ sim.T).T, dtype=np.float32)
