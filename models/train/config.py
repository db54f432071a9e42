"""The trainer's one typed, frozen settings object, and the periodic trainer's defaults.

Plain data, no torch: the command lines generate their options from these fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
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
    Each field's meaning is in its ``metadata["help"]`` (the command lines' help).

    ``loss``: ``full_softmax`` is cheap for a few thousand items. ``windows``:
    ``all`` cuts each user's training sequence into consecutive windows of
    ``max_len + 1`` items; ``last`` keeps only the most recent one (as SASRec does).
    """

    loss: Loss = field(default="sampled_softmax", metadata={
        "help": "sampled_softmax: in-batch softmax over the batch's target items, logQ-corrected; "
                "full_softmax: scores every item; bce: n_negatives sampled negatives per position."})
    n_negatives: int = field(default=1, metadata={"help": "Uniform negatives per position (bce)."})
    batch_size: int = field(default=128, metadata={"help": "Training windows per optimizer step."})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    epochs: int = field(default=50, metadata={"help": "Most epochs (early stopping on validation NDCG@eval_k)."})
    patience: int = field(default=5, metadata={"help": "Epochs without a better validation NDCG before stopping."})
    eval_k: int = field(default=10, metadata={"help": "k of the validation NDCG@k that early stopping follows."})
    windows: Windows = field(default="all", metadata={
        "help": "all: every position of a history is a target once per epoch; last: each user's latest window."})
    content: Content = field(default="tfidf", metadata={
        "help": "Item text features for the item tower (none: ids only, no cold start from text)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initial weights, batches and featurizer."})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda or cuda:N."})
    num_threads: int | None = field(default=None, metadata={"help": "Torch intra-op threads (none: torch's default)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar per epoch."})
    max_steps: int | None = field(default=None, metadata={
        "help": "Stop after this many optimizer steps (none: no limit; smoke tests)."})
    time_budget_s: float | None = field(default=None, metadata={
        "help": "Stop training after this many seconds, keeping the best epoch so far (none: no limit)."})

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
            "time_budget_s": self.time_budget_s is None or self.time_budget_s > 0,
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
