"""Neighbourhood models: item-item and user-user cosine similarity on the interaction matrix."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from models.base import NotFittedError, Recommender, train_of
from models.data.dataset import Interactions, ItemCatalog, Split

# Above this a dense item-item float32 similarity is not built (1 GiB: 16,384 items).
MAX_DENSE_BYTES = 1 << 30


def histories_matrix(histories: Sequence[np.ndarray], n_items: int, binary: bool = True) -> sp.csr_matrix:
    """(len(histories), n_items) float32 CSR: 1.0 per item a history holds, or its count when not ``binary``.

    Histories carry no weights, so each event counts 1 (not the event type's weight).
    """
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if lens.sum() else np.zeros(0, np.int64)
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"history item out of range 0..{n_items - 1}")
    rows = np.repeat(np.arange(len(histories)), lens)
    m = sp.csr_matrix((np.ones(len(items), np.float32), (rows, items)), shape=(len(histories), n_items),
                      dtype=np.float32)
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m


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


def rank_within(groups: np.ndarray) -> np.ndarray:
    """For a sorted group id array, each element's 0-based position within its group."""
    if len(groups) == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def keep_top_k_sparse_columns(sim: sp.spmatrix, k: int | None) -> sp.csc_matrix:
    """The ``k`` largest stored entries of each column of a sparse similarity (ties: lower row), CSC."""
    sim = sp.csc_matrix(sim)
    if k is None:
        return sim
    sim.sum_duplicates()
    cols = np.repeat(np.arange(sim.shape[1]), np.diff(sim.indptr))
    order = np.lexsort((sim.indices, -sim.data, cols))
    keep = order[rank_within(cols[order]) < k]
    keep.sort()  # back to CSC order
    return sp.csc_matrix((sim.data[keep], sim.indices[keep], np.r_[0, np.cumsum(np.bincount(cols[keep],
                         minlength=sim.shape[1]))]), shape=sim.shape)


class ItemKNN(Recommender):
    """Item-item cosine kNN: score(u, j) = sum of sim(i, j) over the user's items i.

    ``k``: neighbours kept per target item j (None: all). ``binary``: use 0/1
    interactions rather than weights. Memory: a dense (n_items, n_items) float32
    when that takes at most ``max_dense_bytes`` (default 1 GiB, 16,384 items:
    MovieLens and yoochoose-100k stay dense), otherwise a scipy.sparse one
    holding only co-occurring pairs, top-``k`` per column kept sparsely (taobao's
    55,368 items would need 12 GB dense). Both give the same scores up to float
    summation order.
    """

    name = "itemknn"
    kind = "baseline"

    def __init__(self, k: int | None = None, binary: bool = True, max_dense_bytes: int = MAX_DENSE_BYTES) -> None:
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1 or None, got {k}")
        self.k, self.binary, self.max_dense_bytes = k, binary, max_dense_bytes
        self._x: sp.csr_matrix | None = None
        self._sim: np.ndarray | sp.csr_matrix | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> ItemKNN:
        x = train_of(split_or_train).matrix(binary=self.binary)
        xt = cosine_rows(x.T.tocsr())  # item vectors over users
        n = x.shape[1]
        if n * n * np.dtype(np.float32).itemsize <= self.max_dense_bytes:
            sim = (xt @ xt.T).toarray().astype(np.float32)
            np.fill_diagonal(sim, 0.0)
            # Column j holds the neighbours of target item j.
            self._sim = keep_top_k(sim, self.k, axis=0)
        else:
            coo = sp.coo_matrix(xt @ xt.T)
            off = coo.row != coo.col
            coo = sp.coo_matrix((coo.data[off].astype(np.float32), (coo.row[off], coo.col[off])), shape=(n, n))
            self._sim = keep_top_k_sparse_columns(coo, self.k).tocsr()
        self._x = x
        return self

    @property
    def similarity(self) -> np.ndarray | sp.csr_matrix | None:
        """Item-item cosine, float32 (n_items, n_items), column j = neighbours of j; None before fit.

        A dense array, or a CSR matrix above ``max_dense_bytes``.
        """
        return self._sim

    def fold_in(self, history: Interactions) -> None:
        """Score from ``history``; the similarities stay those learnt in ``fit``."""
        self._x = history.matrix(binary=self.binary)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._x is None or self._sim is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._score_rows(self._x[users])

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Sum of similarities from the history's items (same as ``score`` for a user with that history)."""
        if self._x is None or self._sim is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._score_rows(histories_matrix(histories, self._x.shape[1], binary=self.binary))

    def _score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        out = rows @ self._sim
        if sp.issparse(out):
            out = out.toarray()
        return np.asarray(out, dtype=np.float32)


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
        return self._from_neighbours(sim)

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Cosine of each history's item set to every pool user, then as ``score`` (no user to exclude)."""
        if self._x is None or self._xn is None:
            raise NotFittedError(f"{self.name}: fit first")
        h = cosine_rows(histories_matrix(histories, self._x.shape[1], binary=self.binary))
        return self._from_neighbours((h @ self._xn.T).toarray())

    def _from_neighbours(self, sim: np.ndarray) -> np.ndarray:
        sim = keep_top_k(sim, self.k, axis=1)
        return np.ascontiguousarray((self._x.T @ sim.T).T, dtype=np.float32)
