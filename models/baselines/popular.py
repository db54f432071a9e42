"""Most popular: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from models.base import NotFittedError, Recommender, train_of
from models.data.dataset import Interactions, ItemCatalog, Split


class MostPopular(Recommender):
    """Scores each item by its number of training interactions (rows, not weights)."""

    name = "pop"
    kind = "baseline"

    def __init__(self) -> None:
        self._counts: np.ndarray | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> MostPopular:
        train = train_of(split_or_train)
        self._counts = np.bincount(train.item, minlength=train.n_items).astype(np.float32)
        return self

    def fold_in(self, history: Interactions) -> None:
        # Popularity is a running count: serving would include every known interaction.
        self._counts = np.bincount(history.item, minlength=history.n_items).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._counts is None:
            raise NotFittedError(f"{self.name}: fit first")
        return np.tile(self._counts, (len(users), 1))

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The same counts for every session, whatever it holds."""
        return self.score(np.zeros(len(histories), dtype=np.int64))
