"""Content-based: rank items by TF-IDF similarity to the items in the user's history."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from models.base import NotFittedError, Recommender, train_of
from models.baselines.knn import histories_matrix
from models.data.dataset import Interactions, ItemCatalog, Split
from models.features.text import Tfidf


class ContentBased(Recommender):
    """score(u, j) = sum over the user's items i of cosine(tfidf_i, tfidf_j), weighted by interaction weight.

    Works for items nobody has interacted with, as long as they have text.
    """

    name = "content"
    kind = "baseline"

    def __init__(self, min_df: int = 1, binary: bool = True) -> None:
        self.min_df, self.binary = min_df, binary
        self.featurizer: Tfidf | None = None
        self._x: sp.csr_matrix | None = None
        self._t: sp.csr_matrix | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> ContentBased:
        train = train_of(split_or_train)
        if len(catalog) != train.n_items:
            raise ValueError(f"catalog has {len(catalog)} items, interactions {train.n_items}")
        self.featurizer = Tfidf(min_df=self.min_df)
        self._t = self.featurizer.fit_transform(catalog.documents())
        self._x = train.matrix(binary=self.binary)
        return self

    def fold_in(self, history: Interactions) -> None:
        self._x = history.matrix(binary=self.binary)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._x is None or self._t is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._score_rows(self._x[users])

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """As ``score``, the profile being the history's items (each event weight 1 when not ``binary``)."""
        if self._x is None or self._t is None:
            raise NotFittedError(f"{self.name}: fit first")
        return self._score_rows(histories_matrix(histories, self._x.shape[1], binary=self.binary))

    def _score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        profile = rows @ self._t  # (B, n_terms), sparse
        return np.asarray((profile @ self._t.T).toarray(), dtype=np.float32)
