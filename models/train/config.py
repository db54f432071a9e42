"""The trainer's one typed, frozen settings object, and the periodic trainer's defaults.

Plain data, no torch: the command lines generate their options from these fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from models.towers.config import TOWERS, Tower, TowerConfig

Loss = Literal["sampled_softmax", "full_softmax", "bce"]
Windows = Literal["all", "last"]
Content = Literal["none", "tfidf", "bow", "word2vec"]

__all__ = ["TOWERS", "TRAINER_DEFAULTS", "Content", "Loss", "Tower", "TrainConfig", "Windows", "trainer_config"]


@dataclass(frozen=True)
class TrainConfig(TowerConfig):
    """Every setting of :func:`models.train.train_two_tower`: the architecture
    (:class:`models.towers.config.TowerConfig`'s fields, first) and the training.

    ``loss``: ``sampled_softmax`` (default) is in-batch softmax over the batch's
    distinct target items with logQ popularity correction; ``full_softmax`` scores
    every item (cheap for a few thousand items); ``bce`` uses ``n_negatives``
    uniformly sampled negatives per position.
    ``windows``: ``all`` cuts each user's training sequence into consecutive
    windows of ``max_len + 1`` items so every position is a target once per epoch;
    ``last`` keeps only each user's most recent window (as SASRec does).
    ``content``: the item text features fed to the item tower (``none`` = ids only).
    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    ``num_threads``: torch intra-op threads (``None``: torch's default).
    ``max_steps``: stop after this many optimizer steps (``None``: no limit; smoke tests).
    """

    loss: Loss = "sampled_softmax"
    n_negatives: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 50
    patience: int = 5
    eval_k: int = 10
    windows: Windows = "all"
    content: Content = "tfidf"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    progress: bool = True
    max_steps: int | None = None

    def _checks(self) -> dict[str, bool]:
        return {
            **super()._checks(),
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "epochs": self.epochs >= 1,
            "patience": self.patience >= 1,
            "eval_k": self.eval_k >= 1,
            "n_negatives": self.n_negatives >= 1,
            "loss": self.loss in get_args(Loss),
            "windows": self.windows in get_args(Windows),
            "content": self.content in get_args(Content),
            "num_threads": self.num_threads is None or self.num_threads >= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The periodic trainer's (``streamrec train`` / ``trainer``, the demo) departures from
# TrainConfig's library defaults; every other field is TrainConfig's own. Full softmax
# scores the whole catalogue, cheap at the few thousand items served (the report's
# models chose it on ml-100k validation too); 30 epochs, patience 4 bound a run's time.
TRAINER_DEFAULTS: dict[str, Any] = {"loss": "full_softmax", "epochs": 30, "patience": 4}


def trainer_config(**overrides: Any) -> TrainConfig:
    """The periodic trainer's settings: :data:`TRAINER_DEFAULTS` over TrainConfig's, then ``overrides``."""
    return TrainConfig(**{**TRAINER_DEFAULTS, **overrides})
