"""Matrix factorisation with the ``implicit`` library (CPU): BPR and ALS."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from models.base import NotFittedError, Recommender, train_of
from models.data.dataset import Interactions, ItemCatalog, Split

log = logging.getLogger(__name__)


class _ImplicitMF(Recommender):
    kind = "baseline"

    def __init__(self, factors: int, iterations: int, regularization: float, num_threads: int, seed: int) -> None:
        self.factors, self.iterations, self.regularization = factors, iterations, regularization
        self.num_threads, self.seed = num_threads, seed
        self._user_factors: np.ndarray | None = None
        self._item_factors: np.ndarray | None = None

    def _make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> _ImplicitMF:
        train = train_of(split_or_train)
        # implicit warns, and slows down, when BLAS runs its own thread pool inside its loops.
        with threadpool_limits(1, "blas"):
            model = self._make()
            model.fit(self._fit_matrix(train), show_progress=False)
        self._user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def _fit_matrix(self, train: Interactions):
        return train.matrix(binary=True)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._user_factors is None or self._item_factors is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._user_factors[users] @ self._item_factors.T


class ImplicitBPR(_ImplicitMF):
    """Bayesian personalised ranking (``implicit.cpu.bpr``), one thread by default so runs repeat exactly."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 100,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(factors, iterations, regularization, num_threads, seed)
        self.learning_rate = learning_rate

    def _make(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate, regularization=self.regularization,
            iterations=self.iterations, num_threads=self.num_threads, random_state=self.seed,
        )


class ImplicitALS(_ImplicitMF):
    """Weighted alternating least squares (``implicit.cpu.als``, Hu, Koren & Volinsky 2008).

    Confidence as implicit computes it: ``alpha * weight`` on observed cells
    (weights are binary here), 1 on the rest; i.e. Hu et al.'s 1 + alpha' * r
    with alpha' * r = alpha * weight - 1.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 2.0,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(factors, iterations, regularization, num_threads, seed)
        self.alpha = alpha

    def _make(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, num_threads=self.num_threads, random_state=self.seed,
        )

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Each history's user factors solved in closed form from the item factors, then scored.

        The ALS user step (implicit's ``recalculate_user``): x = (YtY + reg I +
        sum_i (c_i - 1) y_i y_i^T)^-1 sum_i c_i y_i over the history's distinct
        items i, c_i = alpha (the binary weights ``fit`` used). Close to, not equal
        to, a training user's factors: implicit fits those with conjugate-gradient
        steps, one item update before the last.
        """
        if self._user_factors is None or self._item_factors is None:
            raise NotFittedError(f"{self.name}: fit first")
        y = self._item_factors.astype(np.float64)
        base = y.T @ y + self.regularization * np.eye(self.factors)
        x = np.zeros((len(histories), self.factors), dtype=np.float64)
        for row, history in enumerate(histories):
            items = np.unique(np.asarray(history, dtype=np.int64))
            if len(items) == 0:
                continue
            yh = y[items]
            x[row] = np.linalg.solve(base + (self.alpha - 1.0) * (yh.T @ yh), self.alpha * yh.sum(axis=0))
        return (x.astype(np.float32) @ self._item_factors.T).astype(np.float32)
