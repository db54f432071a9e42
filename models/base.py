"""The interface every offline recommender implements (baselines, two-tower models, rankers)."""

from __future__ import annotations

import abc
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp

from models.data.dataset import Interactions, ItemCatalog, Split
from models.errors import ModelsError

Kind = Literal["baseline", "two_tower", "ranker"]


class NotFittedError(ModelsError):
    """``score`` was called before ``fit``."""


class Recommender(abc.ABC):
    """Scores every item for a batch of users; higher is better.

    ``fit`` accepts a ``Split`` (trains on ``split.train``; ``split.valid`` may
    be used for early stopping, never ``split.test``) or the training
    ``Interactions`` directly.
    """

    name: str = "recommender"
    kind: Kind = "baseline"

    @abc.abstractmethod
    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> Recommender:
        """Train; returns ``self``."""

    @abc.abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores, float32 shape (len(users), n_items), for int64 user indices ``users``."""

    def fold_in(self, history: Interactions) -> None:
        """Take ``history`` as the users' known interactions when scoring, without retraining.

        Evaluation calls it with train + validation before scoring test: the
        validation item happened before the test item, so a live system would
        know it. Models whose scores read the history matrix directly (kNN,
        content, popularity counts) use it; the default keeps what ``fit`` saw.
        """

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores, float32 (len(histories), n_items), for sessions nobody trained on.

        Each history is one session's chronological item indices (int64), e.g. the
        clicks so far of a session that started after training (the session
        protocol, :mod:`models.evaluate.session`). Models whose user side is a
        learnt per-user parameter cannot do this and raise ``NotImplementedError``
        (the default); see :attr:`scores_histories`.
        """
        raise NotImplementedError(f"{self.name}: cannot score users it was not trained on")

    @property
    def scores_histories(self) -> bool:
        """Whether :meth:`score_histories` is implemented (the session protocol skips models without it)."""
        return type(self).score_histories is not Recommender.score_histories

    def recommend(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        """Top-``k`` item indices, int64 (len(users), k), best first; ``exclude`` rows are per user index."""
        scores = self.score(np.asarray(users, dtype=np.int64))
        if exclude is not None:
            mask_rows(scores, exclude[np.asarray(users)])
        return top_k(scores, k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"


def train_of(split_or_train: Split | Interactions) -> Interactions:
    """The training interactions of a ``Split``, or the argument itself."""
    return split_or_train.train if isinstance(split_or_train, Split) else split_or_train


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix) -> None:
    """Set ``scores[r, c]`` to -inf in place for every stored cell (r, c) of ``exclude`` (same row count)."""
    exclude = exclude.tocsr()
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    scores[rows, exclude.indices] = -np.inf


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, int64 (rows, k), best first; ties by lower index."""
    n = scores.shape[1]
    k = min(k, n)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: last key is primary; sort by score descending, then item index.
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)
