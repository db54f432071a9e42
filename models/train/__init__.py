"""Two-tower training: config, losses, the seq-to-seq loop (single process or DDP), CLI.

``train_two_tower(split, TrainConfig(...)) -> TrainedModel``; ``models.train.recommender``
registers ``two_tower_{mean,gru,cnn,sasrec}`` in the evaluation registry when imported.
"""

from models.train.config import TrainConfig
from models.train.loop import TrainedModel, fit_sequences, train_two_tower

__all__ = ["TrainConfig", "TrainedModel", "fit_sequences", "train_two_tower"]
