"""A two-tower model as serving holds it: the towers, the id maps, the item vectors, the featurizer.

What :func:`models.artifacts.load_artifact` returns. It depends on the towers
and the features only, never on the training loop: the worker loads versions
without importing :mod:`models.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from models.data.dataset import IdMap
from models.features.content import Featurizer
from models.towers.config import TowerConfig
from models.towers.model import TwoTower


@dataclass
class LoadedModel:
    """A model loaded from an artifact, ready for serving: eval mode, on CPU.

    ``config``: the architecture the towers were built with; ``train_config``:
    the training settings recorded with the version (plain JSON, for provenance).
    ``item_embeddings`` float32 (n_items, dim), row = index in ``items``.
    """

    path: Path
    config: TowerConfig
    model: TwoTower
    items: IdMap
    users: IdMap
    item_embeddings: np.ndarray
    featurizer: Featurizer | None
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)

    def encode_user(self, history: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """float32 (dim,) from chronological item indices (the worker's per-event path)."""
        return self.model.user_tower.encode(history, weights)

    COLD_CHUNK = 8_192  # texts per featurizer call: a million cold items never become one dense matrix

    def cold_item_vectors(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim) for items with text but no trained id (zeros without a featuriser).

        Sparse features (TF-IDF, bag of words) are projected as sparse rows, a chunk at a time.
        """
        tower = self.model.item_tower
        out = np.zeros((len(texts), tower.dim), dtype=np.float32)
        if self.featurizer is None or tower.content_proj is None:
            return out
        weight_t = tower.content_proj.weight.detach().cpu().numpy().T  # (n_features, dim)
        for start in range(0, len(texts), self.COLD_CHUNK):
            x = self.featurizer.transform(texts[start:start + self.COLD_CHUNK])
            out[start:start + x.shape[0]] = x @ weight_t if sp.issparse(x) else np.asarray(x, np.float32) @ weight_t
        return out
