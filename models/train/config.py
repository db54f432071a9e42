"""The trainer's one typed, frozen settings object."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

Tower = Literal["mean", "gru", "cnn", "sasrec"]
Loss = Literal["sampled_softmax", "full_softmax", "bce"]


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of :func:`models.train.train_two_tower`.

    ``loss``: ``sampled_softmax`` (default) is in-batch softmax over the batch's
    distinct target items with logQ popularity correction; ``full_softmax`` scores
    every item (cheap for a few thousand items); ``bce`` uses ``n_negatives``
    uniformly sampled negatives per position.
    ``windows``: ``all`` cuts each user's training sequence into consecutive
    windows of ``max_len + 1`` items so every position is a target once per epoch;
    ``last`` keeps only each user's most recent window (as SASRec does).
    ``content``: the item text features fed to the item tower (``none`` = ids only).
    """

    tower: Tower = "sasrec"
    dim: int = 64
    max_len: int = 50
    dropout: float = 0.2
    id_dropout: float = 0.1
    n_layers: int = 2
    n_heads: int = 1
    kernel_size: int = 3
    loss: Loss = "sampled_softmax"
    n_negatives: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 50
    patience: int = 5
    eval_k: int = 10
    windows: Literal["all", "last"] = "all"
    content: Literal["none", "tfidf", "bow", "word2vec"] = "tfidf"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    progress: bool = True
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)

    def __post_init__(self) -> None:
        checks = {
            "dim": self.dim >= 1,
            "max_len": self.max_len >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "id_dropout": 0.0 <= self.id_dropout < 1.0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "epochs": self.epochs >= 1,
            "patience": self.patience >= 1,
            "n_negatives": self.n_negatives >= 1,
            "tower": self.tower in ("mean", "gru", "cnn", "sasrec"),
            "loss": self.loss in ("sampled_softmax", "full_softmax", "bce"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid TrainConfig fields: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    def tower_spec(self, n_items: int, n_features: int) -> dict[str, Any]:
        """The JSON-able dict :class:`models.towers.TwoTower` is built from."""
        return {
            "tower": self.tower, "n_items": n_items, "n_features": n_features, "dim": self.dim,
            "max_len": self.max_len, "dropout": self.dropout,
            # Without content, dropping the id would leave an item with no vector at all.
            "id_dropout": self.id_dropout if n_features else 0.0,
            "n_layers": self.n_layers, "n_heads": self.n_heads, "kernel_size": self.kernel_size,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
