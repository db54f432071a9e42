"""Two-tower training: config, losses, the seq-to-seq loop (single process or DDP), CLI.

``train_two_tower(split, TrainConfig(...)) -> TrainedModel``; ``models.train.recommender``
registers ``two_tower_{mean,gru,cnn,sasrec}`` in the evaluation registry when imported.
The loop (torch) loads on first use of its names, so reading :mod:`models.train.config`
(the command lines' options) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.train.config import TrainConfig

_LAZY = {"TrainedModel": "models.train.loop", "fit_sequences": "models.train.loop",
         "train_two_tower": "models.train.loop"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["TrainConfig", "TrainedModel", "fit_sequences", "train_two_tower"]
