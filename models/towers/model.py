"""The two-tower model: a user tower over history and the shared item tower, built from a plain config."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.towers.item import ItemTower
from models.towers.user import UserTower, make_user_tower

# Constructor arguments each user tower accepts beyond (item_tower, max_len, dropout).
_TOWER_ARGS: dict[str, tuple[str, ...]] = {
    "mean": (),
    "gru": ("n_layers",),
    "cnn": ("kernel_size", "dilations"),
    "sasrec": ("n_layers", "n_heads"),
}


class TwoTower(nn.Module):
    """User tower (which owns the item tower, shared for history embedding and scoring).

    ``spec`` is a JSON-able dict (``tower``, ``n_items``, ``dim``, ``max_len``,
    ``dropout``, ``id_dropout``, ``n_features`` and the tower's own arguments)
    enough to rebuild the module before loading weights.
    """

    def __init__(self, spec: dict[str, Any], content: np.ndarray | None = None) -> None:
        super().__init__()
        self.spec = dict(spec)
        n_items, n_features = int(spec["n_items"]), int(spec.get("n_features", 0))
        if content is None:
            content = np.zeros((n_items, n_features), dtype=np.float32)
        if content.shape != (n_items, n_features):
            raise ValueError(f"content must have shape ({n_items}, {n_features}), got {content.shape}")
        item = ItemTower(n_items, int(spec["dim"]), content, id_dropout=float(spec.get("id_dropout", 0.0)),
                         id_backoff=float(spec.get("id_backoff", 0.0)))
        kind = str(spec["tower"])
        extra = {k: spec[k] for k in _TOWER_ARGS.get(kind, ()) if k in spec}
        self.user_tower: UserTower = make_user_tower(
            kind, item, max_len=int(spec["max_len"]), dropout=float(spec["dropout"]), **extra
        )
        self._item_table: torch.Tensor | None = None  # set by freeze()

    def freeze(self) -> TwoTower:
        """Serve from now on: eval mode, no gradients, the item tower's outputs computed once
        (:meth:`ItemTower.table`) so :meth:`user_vectors` looks history items up instead of
        running the item tower per event. The weights must not change afterwards."""
        self.eval()
        self.requires_grad_(False)
        self._item_table = self.item_tower.table()
        return self

    def train(self, mode: bool = True) -> TwoTower:
        if mode and self._item_table is not None:
            raise RuntimeError("a frozen (serving) model cannot be trained: its item table would go stale")
        return super().train(mode)

    @property
    def item_tower(self) -> ItemTower:
        return self.user_tower.item_tower

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors: tokens int64 (b, L) left-padded -> float32 (b, dim)."""
        return self.user_tower(tokens, weights)

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """float32 (n_items, dim), row ``i`` = item index ``i`` (eval mode: no id dropout)."""
        was = self.training
        self.eval()
        try:
            return self.item_tower.all_items().float().cpu().numpy()
        finally:
            self.train(was)

    @torch.no_grad()
    def user_vectors(self, histories: list[np.ndarray], batch_size: int = 512) -> np.ndarray:
        """float32 (len(histories), dim) from chronological item-index arrays (empty: zeros)."""
        was = self.training
        self.eval()
        device = self.item_tower.id_embedding.weight.device
        out = np.zeros((len(histories), self.item_tower.dim), dtype=np.float32)
        max_len = self.user_tower.max_len
        # A chunk is padded to its longest history only, and chunks are cut from histories sorted
        # by length: users of a few events do not pay for max_len steps.
        lengths = np.fromiter((min(len(h), max_len) for h in histories), dtype=np.int64, count=len(histories))
        order = np.argsort(lengths, kind="stable")
        order = order[lengths[order] > 0]  # empty histories stay zeros
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = int(lengths[rows[-1]])
                tokens = torch.as_tensor(right_pad([histories[r] for r in rows], width), device=device)
                embedded = (self.item_tower(tokens) if self._item_table is None
                            else F.embedding(tokens, self._item_table))
                chunk = self.user_tower.encode_last(embedded, torch.as_tensor(lengths[rows], device=device))
                out[rows] = chunk.float().cpu().numpy()
        finally:
            self.train(was)
        return out


def right_pad(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """Tokens int64 (len(histories), max_len): the last ``max_len`` item indices + 1 first, then 0s."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_len:]
        out[r, : len(h)] = h + 1
    return out


def left_pad(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """Tokens int64 (len(histories), max_len): the last ``max_len`` item indices + 1, left-padded with 0."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_len:]
        if len(h):
            out[r, max_len - len(h) :] = h + 1
    return out
