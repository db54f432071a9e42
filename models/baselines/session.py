"""Session baselines after Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms".

The session-rec framework's ``ContextKNN`` (S-KNN), ``VMContextKNN`` (V-SKNN),
``SequentialRules`` (SR) and ``AssociationRules`` (AR), vectorised with
numpy/scipy.sparse. A "session" here is one user's chronological item sequence
(yoochoose users are sessions). So that users with long histories (MovieLens,
Taobao) behave like sessions too, the kNN models take a user's last ``last_n``
items as its current session, and cut every user's sequence into consecutive
chunks of ``pool_window`` items (the last chunk ends at the latest click) as
neighbour sessions; ``pool_window=None`` keeps whole sequences. The rules models
use only the current session's last item.

``fit`` builds the neighbour pool / rule counts from ``split.train``;
``fold_in(history)`` rebuilds them from ``history`` and takes its sequences as
the users' current sessions; ``score(users)`` never lets a user's own session be
its neighbour; ``score_histories`` scores sessions outside the pool.

Defaults (``last_n``, ``pool_window=20``, exact neighbours ``sample_size=None``)
were chosen on validation NDCG@10 over ml-100k, ml-1m and yoochoose-100k, one
value for all (taobao's validation has under 6 hits in 815 users for every
setting, too few to choose by).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from models.base import NotFittedError, Recommender, train_of
from models.baselines.knn import rank_within
from models.data.dataset import Interactions, ItemCatalog, Split

# Neighbour-session length for the kNN models (see the module docstring).
DEFAULT_POOL_WINDOW = 20
# Cells of the dense (sessions x pool sessions) overlap block scored at once.
_BLOCK_CELLS = 1 << 22


def _window(sessions: Sequence[np.ndarray], last_n: int | None) -> list[np.ndarray]:
    """Each session's last ``last_n`` items (all of them for None), int64."""
    out = [np.asarray(s, dtype=np.int64) for s in sessions]
    return out if last_n is None else [s[-last_n:] for s in out]


def _from_end(sessions: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(len(sessions), n_items) CSR: 1-based position of each item from the session's end (1 = last click).

    An item clicked more than once keeps its most recent position.
    """
    lens = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    if lens.sum() == 0:
        return sp.csr_matrix((len(sessions), n_items), dtype=np.float64)
    items = np.concatenate(sessions)
    rows = np.repeat(np.arange(len(sessions)), lens)
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    step = lens[rows] - (np.arange(len(items)) - starts)
    order = np.lexsort((step, items, rows))
    first = np.r_[True, (rows[order][1:] != rows[order][:-1]) | (items[order][1:] != items[order][:-1])]
    keep = order[first]
    return sp.csr_matrix((step[keep].astype(np.float64), (rows[keep], items[keep])),
                         shape=(len(sessions), n_items))


class _SessionModel(Recommender):
    """Shared plumbing: the pool comes from ``fit``/``fold_in``, the current sessions from the same data."""

    kind = "baseline"

    def __init__(self) -> None:
        self._sessions: list[np.ndarray] | None = None
        self._n_items = 0

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> _SessionModel:
        self._use(train_of(split_or_train))
        return self

    def fold_in(self, history: Interactions) -> None:
        """``history`` is both the users' current sessions and the pool a live system would know."""
        self._use(history)

    def _use(self, inter: Interactions) -> None:
        self._n_items = inter.n_items
        self._sessions = inter.sequences()
        self._build(inter)

    def _build(self, inter: Interactions) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self) -> list[np.ndarray]:
        if self._sessions is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._sessions

    def score(self, users: np.ndarray) -> np.ndarray:
        sessions = self._check()
        users = np.asarray(users, dtype=np.int64)
        return self._score([sessions[u] for u in users], users)

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        self._check()
        return self._score(list(histories), None)

    def _score(self, sessions: list[np.ndarray], own: np.ndarray | None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class SessionKNN(_SessionModel):
    """S-KNN (session-rec ``ContextKNN``): score(i) = sum of sim(s, n) over the ``k`` neighbours n holding i.

    sim = cosine of binary item sets, |s & n| / sqrt(|s| |n|), between the
    current session s (the last ``last_n`` items) and each pool session n.
    Neighbours are the ``k`` most similar pool sessions sharing an item with s,
    other than the user's own; ties: the more recent session first.
    ``sample_size=None`` (default) searches all of them exactly; an int first
    keeps the ``sample_size`` most recent (by last click), session-rec's
    ``sampling='recent'`` (its default 500 scored lower on validation: ml-1m
    0.1320 against 0.1421 exact, yoochoose-100k 0.2491 against 0.2486).

    Validation NDCG@10 (yoochoose-100k / ml-100k / ml-1m), pool_window 20, exact:
    last_n 2: 0.2555 / 0.1013 / 0.1381; 3 (default): 0.2486 / 0.1073 / 0.1421;
    5: 0.2422 / 0.1094 / 0.1414; whole sequences as neighbours (pool_window None,
    last_n 3, sample 500): 0.2484 / 0.0903 / 0.0636.
    """

    name = "sknn"

    def __init__(self, k: int = 100, sample_size: int | None = None, last_n: int | None = 3,
                 pool_window: int | None = DEFAULT_POOL_WINDOW) -> None:
        super().__init__()
        for label, v in (("k", k), ("sample_size", sample_size), ("last_n", last_n), ("pool_window", pool_window)):
            if v is not None and v < 1:
                raise ValueError(f"{label} must be >= 1, got {v}")
        self.k, self.sample_size, self.last_n, self.pool_window = k, sample_size, last_n, pool_window
        self._pool: sp.csr_matrix | None = None
        self._pool_t: sp.csr_matrix | None = None
        self._pool_len: np.ndarray | None = None
        self._recency: np.ndarray | None = None
        self._first = np.zeros(0, dtype=np.int64)  # per user: its first pool session
        self._count = np.zeros(0, dtype=np.int64)  # per user: its number of pool sessions

    def _build(self, inter: Interactions) -> None:
        order = np.argsort(inter.user, kind="stable")  # rows are time-ordered already
        user, item, ts = inter.user[order], inter.item[order], inter.timestamp[order]
        lens = np.bincount(user, minlength=inter.n_users)
        width = self.pool_window
        self._count = np.minimum(lens, 1) if width is None else -(-lens // width)
        self._first = np.cumsum(self._count) - self._count
        n_pool = int(self._count.sum())
        if width is None:
            row = self._first[user]
        else:
            # Chunks aligned at the end of each sequence: the last chunk holds the latest clicks.
            from_end = np.repeat(lens, lens) - 1 - (np.arange(len(user)) - np.repeat(np.cumsum(lens) - lens, lens))
            row = self._first[user] + self._count[user] - 1 - from_end // width
        self._pool = sp.csr_matrix((np.ones(len(item), np.float32), (row, item)), shape=(n_pool, inter.n_items))
        self._pool.sum_duplicates()
        self._pool.data[:] = 1.0
        self._pool_t = self._pool.T.tocsr()
        self._pool_len = np.diff(self._pool.indptr).astype(np.float64)
        last = np.full(n_pool, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, row, ts)
        # Rank 0 = oldest; ties by index, so the order is total and repeatable.
        self._recency = np.empty(n_pool, dtype=np.int64)
        self._recency[np.lexsort((np.arange(n_pool), last))] = np.arange(n_pool)

    def _score(self, sessions: list[np.ndarray], own: np.ndarray | None) -> np.ndarray:
        assert self._pool is not None
        windows = _window(sessions, self.last_n)
        out = np.zeros((len(windows), self._n_items), dtype=np.float32)
        rows_per_block = max(1, _BLOCK_CELLS // max(1, self._pool.shape[0]))
        for start in range(0, len(windows), rows_per_block):
            block = windows[start:start + rows_per_block]
            block_own = None if own is None else own[start:start + rows_per_block]
            rows, cols, weight = self._neighbours(_from_end(block, self._n_items), block_own)
            w = sp.csr_matrix((weight, (rows, cols)), shape=(len(block), self._pool.shape[0]))
            out[start:start + len(block)] = self._item_scores(w)
        return out

    def _item_scores(self, w: sp.csr_matrix) -> np.ndarray:
        return (w @ self._pool).toarray()

    def _neighbours(self, steps: sp.csr_matrix, own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, pool session, weight) of each row's kept neighbours; ``steps`` from ``_from_end``."""
        assert self._pool_t is not None and self._recency is not None
        binary = steps.copy()
        binary.data[:] = 1.0
        overlap = (binary @ self._pool_t).toarray()
        if own is not None:  # a user's sessions are never its own neighbours
            n = self._count[own]
            rows = np.repeat(np.arange(len(own)), n)
            overlap[rows, np.repeat(self._first[own], n) + rank_within(rows)] = 0.0
        rows, cols = np.nonzero(overlap)
        sim = self._similarity(steps, rows, cols, overlap[rows, cols])
        rows, cols, sim = self._select(rows, cols, sim)
        return rows, cols, sim * self._decay(steps, rows, cols)

    def _similarity(self, steps: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray,
                    overlap: np.ndarray) -> np.ndarray:
        assert self._pool_len is not None
        return overlap / np.sqrt(np.diff(steps.indptr)[rows] * self._pool_len[cols])

    def _decay(self, steps: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.ones(len(rows))

    def _select(self, rows: np.ndarray, cols: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per row: the ``sample_size`` most recent candidates, then the ``k`` most similar of those."""
        assert self._recency is not None
        recency = self._recency[cols]
        if self.sample_size is not None:
            order = np.lexsort((-recency, rows))
            keep = order[rank_within(rows[order]) < self.sample_size]
            rows, cols, sim, recency = rows[keep], cols[keep], sim[keep], recency[keep]
        order = np.lexsort((-recency, -sim, rows))
        keep = order[rank_within(rows[order]) < self.k]
        return rows[keep], cols[keep], sim[keep]


class VSKNN(SessionKNN):
    """V-SKNN (session-rec ``VMContextKNN``): S-KNN aware of the order inside the current session.

    The current session's items weigh p / L by position (linear decay, p = 1 for
    the oldest of its L items, the last click 1; session-rec's ``weighting='div'``),
    and sim = sum of the weights of the shared items / L (session-rec's ``vec``).
    Each neighbour's contribution is divided by the position, from the end, of
    the most recent current item it shares (``weighting_score='div_score'``).
    With ``idf_weighting`` w > 0 an item's score is multiplied by
    1 + w * log(n_sessions / n_sessions_with_item), as session-rec does (off by
    default, as there: w = 1 scored 0.2813 / 0.1174 / 0.1524 against 0.2776 / 0.1174 / 0.1549).

    Validation NDCG@10 (yoochoose-100k / ml-100k / ml-1m), pool_window 20, exact:
    last_n 3: 0.2786 / 0.1091 / 0.1487; 5 (default): 0.2776 / 0.1174 / 0.1549;
    10: 0.2767 / 0.1156 / 0.1522; pool_window 50, last_n 5: 0.2764 / 0.1171 / 0.1428.
    """

    name = "vsknn"

    def __init__(self, k: int = 100, sample_size: int | None = None, last_n: int | None = 5,
                 pool_window: int | None = DEFAULT_POOL_WINDOW, idf_weighting: float = 0.0) -> None:
        super().__init__(k=k, sample_size=sample_size, last_n=last_n, pool_window=pool_window)
        if idf_weighting < 0:
            raise ValueError(f"idf_weighting must be >= 0, got {idf_weighting}")
        self.idf_weighting = idf_weighting
        self._idf: np.ndarray | None = None
        self._pool_keys = np.zeros(0, dtype=np.int64)

    def _build(self, inter: Interactions) -> None:
        super()._build(inter)
        assert self._pool_t is not None
        df = np.diff(self._pool_t.indptr).astype(np.float64)
        n = max(1, int((np.diff(self._pool.indptr) > 0).sum()))
        self._idf = np.log(n / np.maximum(df, 1.0))
        pool = self._pool
        pool.sort_indices()
        # (session, item) keys in ascending order, for membership look-ups by searchsorted.
        self._pool_keys = np.repeat(np.arange(pool.shape[0], dtype=np.int64), np.diff(pool.indptr)) * pool.shape[1]
        self._pool_keys += pool.indices

    def _similarity(self, steps: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray,
                    overlap: np.ndarray) -> np.ndarray:
        lens = np.diff(steps.indptr).astype(np.float64)
        weights = steps.copy()  # data: step from the end s -> L - s + 1 (the weight times L)
        weights.data = lens[np.repeat(np.arange(steps.shape[0]), np.diff(steps.indptr))] - steps.data + 1.0
        num = (weights @ self._pool_t).toarray()[rows, cols]
        return num / lens[rows] ** 2

    def _decay(self, steps: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """1 / (the smallest step from the end among the items session ``rows`` shares with pool ``cols``)."""
        assert self._pool is not None
        if len(rows) == 0:
            return np.zeros(0)
        lens = np.diff(steps.indptr)
        # Expand every (row, neighbour) pair over the row's items; look each (neighbour, item) up in the pool.
        pair = np.repeat(np.arange(len(rows)), lens[rows])
        offset = np.arange(len(pair)) - np.repeat(np.cumsum(lens[rows]) - lens[rows], lens[rows])
        at = steps.indptr[rows][pair] + offset
        items, step = steps.indices[at], steps.data[at]
        pool_keys = self._pool_keys
        keys = cols[pair] * self._pool.shape[1] + items
        found = np.searchsorted(pool_keys, keys)
        shared = pool_keys[np.minimum(found, len(pool_keys) - 1)] == keys
        best = np.full(len(rows), np.inf)
        np.minimum.at(best, pair[shared], step[shared])
        return 1.0 / best

    def _item_scores(self, w: sp.csr_matrix) -> np.ndarray:
        assert self._idf is not None
        scores = (w @ self._pool).toarray()
        if self.idf_weighting > 0:
            scores *= (1.0 + self.idf_weighting * self._idf)[None, :]
        return scores


class _RuleModel(_SessionModel):
    """Item -> item rule weights; score(i) = weight of (the session's last item -> i)."""

    def __init__(self, pruning: int | None) -> None:
        super().__init__()
        if pruning is not None and pruning < 1:
            raise ValueError(f"pruning must be >= 1 or None, got {pruning}")
        self.pruning = pruning
        self._rules: sp.csr_matrix | None = None

    def _build(self, inter: Interactions) -> None:
        rules = sp.csr_matrix(self._count(inter), dtype=np.float32)
        rules.sum_duplicates()
        self._rules = _keep_top_k_rows(rules, self.pruning)

    def _count(self, inter: Interactions) -> sp.spmatrix:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def rules(self) -> sp.csr_matrix | None:
        """(n_items, n_items) float32 CSR, row a = weights of a -> b; None before fit."""
        return self._rules

    def _score(self, sessions: list[np.ndarray], own: np.ndarray | None) -> np.ndarray:
        # The session's own rules from its last item are empty (nothing follows it,
        # unless it repeats), so ``own`` needs no exclusion; AR's own co-occurrences
        # are items already in the session.
        assert self._rules is not None
        last = np.array([s[-1] if len(s) else -1 for s in sessions], dtype=np.int64)
        out = np.zeros((len(sessions), self._n_items), dtype=np.float32)
        has = last >= 0
        out[has] = self._rules[last[has]].toarray()
        return out


class SequentialRules(_RuleModel):
    """SR (session-rec ``SequentialRules``): rule a -> b gains 1 / gap each time b follows a by gap <= ``steps``.

    Counted within each session (``weighting='div'``). ``pruning`` keeps each
    item's strongest rules only; session-rec prunes to 20, but the kept rules
    often point at items the user already had, which the ranking excludes, so
    None (keep all) is the default: validation NDCG@10 (yoochoose-100k / ml-100k
    / ml-1m) 0.2585 / 0.0864 / 0.1469 against 0.2579 / 0.0851 / 0.1461 pruned.
    """

    name = "sr"

    def __init__(self, steps: int = 10, pruning: int | None = None) -> None:
        super().__init__(pruning)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def _count(self, inter: Interactions) -> sp.spmatrix:
        order = np.argsort(inter.user, kind="stable")  # rows are time-ordered already
        user, item = inter.user[order], inter.item[order]
        a, b, w = [], [], []
        for gap in range(1, min(self.steps, len(item) - 1) + 1):
            same = user[gap:] == user[:-gap]
            a.append(item[:-gap][same])
            b.append(item[gap:][same])
            w.append(np.full(int(same.sum()), 1.0 / gap, dtype=np.float32))
        n = inter.n_items
        if not a:
            return sp.csr_matrix((n, n), dtype=np.float32)
        return sp.coo_matrix((np.concatenate(w), (np.concatenate(a), np.concatenate(b))), shape=(n, n))


class AssociationRules(_RuleModel):
    """AR (session-rec ``AssociationRules``): rule a -> b counts the sessions holding both, in any order.

    ``pruning``: each item's strongest rules only (session-rec prunes to 10); None
    (default, as for SR) scored 0.2757 / 0.0798 / 0.0529 against 0.2725 / 0.0580 /
    0.0365 pruned (validation NDCG@10, yoochoose-100k / ml-100k / ml-1m).
    """

    name = "ar"

    def __init__(self, pruning: int | None = None) -> None:
        super().__init__(pruning)

    def _count(self, inter: Interactions) -> sp.spmatrix:
        x = inter.matrix(binary=True)
        co = sp.coo_matrix(x.T @ x)
        off = co.row != co.col
        return sp.coo_matrix((co.data[off], (co.row[off], co.col[off])), shape=co.shape)


def _keep_top_k_rows(m: sp.csr_matrix, k: int | None) -> sp.csr_matrix:
    """The ``k`` largest stored entries of each row (ties: lower column), CSR."""
    if k is None:
        return m
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))
    keep = np.sort(order[rank_within(rows[order]) < k])
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)
