"""The two-tower models as :class:`models.base.Recommender`s, registered for the evaluation report.

Registered names: ``two_tower_mean``, ``two_tower_gru``, ``two_tower_cnn``,
``two_tower_sasrec`` (kind ``two_tower``), and ``auto``: the trainer's automatic
choice among them (:mod:`models.train.auto`). Factory keyword arguments override
:class:`TrainConfig` fields, e.g. ``make_model("two_tower_gru", epochs=5)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from models.base import NotFittedError, Recommender
from models.data.dataset import Interactions, ItemCatalog, Split, leave_last_out
from models.evaluate.registry import register_model
from models.towers.config import TOWERS
from models.train.config import TrainConfig
from models.train.loop import TrainedModel, train_two_tower

# Settings the registered models use, chosen on ml-100k validation NDCG@10 only:
# full softmax over the catalogue (a few thousand items); small batches because
# a few thousand users give few optimizer steps per epoch otherwise.
REPORT_DEFAULTS: dict[str, Any] = {
    "loss": "full_softmax", "max_len": 50, "dropout": 0.2, "content": "none",
    "batch_size": 32, "lr": 2e-3, "epochs": 60, "patience": 8, "progress": False,
}


class TwoTowerRecommender(Recommender):
    """Trains :func:`train_two_tower`; scores are dot products of user and item vectors."""

    kind = "two_tower"

    def __init__(self, config: TrainConfig | None = None, name: str | None = None, **overrides: Any) -> None:
        base = config or TrainConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.name = name or f"two_tower_{self.config.tower}"
        self.trained: TrainedModel | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> TwoTowerRecommender:
        """Train with early stopping on ``split.valid``; given bare interactions, hold out each user's last two."""
        split = split_or_train if isinstance(split_or_train, Split) else leave_last_out(split_or_train, catalog)
        self.trained = train_two_tower(split, self.config)
        return self

    def fold_in(self, history: Interactions) -> None:
        self._model().fold_in(history)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._model().score(np.asarray(users, dtype=np.int64))

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        trained = self._model()
        vectors = trained.model.user_vectors([np.asarray(h, dtype=np.int64) for h in histories])
        return (vectors @ trained.item_embeddings.T).astype(np.float32)

    def _model(self) -> TrainedModel:
        if self.trained is None:
            raise NotFittedError(f"{self.name}: call fit() before score()")
        return self.trained


def _factory(tower: str) -> Any:
    def make(**overrides: Any) -> TwoTowerRecommender:
        return TwoTowerRecommender(TrainConfig(**{**REPORT_DEFAULTS, "tower": tower, **overrides}))

    return make


def _auto(**overrides: Any) -> Recommender:
    from models.train.auto import AutoRecommender

    options = {k: overrides.pop(k) for k in ("time_budget_s", "towers", "baselines") if k in overrides}
    return AutoRecommender(TrainConfig(**{**REPORT_DEFAULTS, **overrides}), **options)


def register_two_tower_models() -> None:
    """Register every user tower under ``two_tower_<tower>``, and ``auto`` (the trainer's choice); idempotent."""
    for tower in TOWERS:
        register_model(f"two_tower_{tower}", _factory(tower), overwrite=True)
    register_model("auto", _auto, overwrite=True)


register_two_tower_models()
