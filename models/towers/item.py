"""The item tower: an id embedding plus a projection of the item's content features.

An item unseen in training has no trained id row; its vector comes from the
content path alone (:meth:`ItemTower.from_content`). Training drops the id part
of random items (``id_dropout``) so the content path must carry signal on its own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PAD = 0


def to_tokens(item_indices: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Item indices (int, ``-1`` = none) to tokens: int64 ``index + 1``, ``0`` for padding."""
    t = torch.as_tensor(item_indices, dtype=torch.int64)
    return torch.where(t < 0, torch.zeros_like(t), t + 1)


class ItemTower(nn.Module):
    """Item vectors: ``id_embedding[token] + W @ content[token]``.

    ``content``: float32 (n_items, n_features), row ``i`` the features of item
    index ``i`` (``None`` or zero columns: id only). Token ``0`` (padding) maps to a
    zero vector.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        content: np.ndarray | torch.Tensor | None = None,
        id_dropout: float = 0.1,
        id_backoff: float = 0.0,
    ) -> None:
        super().__init__()
        if n_items < 1 or dim < 1:
            raise ValueError(f"need n_items >= 1 and dim >= 1, got {n_items}, {dim}")
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        self.n_items = n_items
        self.dim = dim
        self.id_dropout = id_dropout
        self.id_embedding = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        nn.init.normal_(self.id_embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.id_embedding.weight[PAD].zero_()
        if content is None:
            content = torch.zeros(n_items, 0)
        content = torch.as_tensor(np.asarray(content, dtype=np.float32))
        if content.ndim != 2 or content.shape[0] != n_items:
            raise ValueError(f"content must have shape ({n_items}, f), got {tuple(content.shape)}")
        self.n_features = int(content.shape[1])
        # Row 0 is the padding token's (all zero) content.
        self.register_buffer("content", torch.cat([torch.zeros(1, self.n_features), content]), persistent=True)
        self.content_proj = nn.Linear(self.n_features, dim, bias=False) if self.n_features else None
        if id_backoff < 0:
            raise ValueError(f"id_backoff must be >= 0, got {id_backoff}")
        self.id_backoff = id_backoff
        if id_backoff > 0:
            # Per token: how much of the id vector an item keeps (set_id_counts); 1 until counts are known.
            self.register_buffer("id_gate", torch.ones(n_items + 1), persistent=True)
        else:
            self.id_gate = None

    def set_id_counts(self, counts: np.ndarray) -> None:
        """Gate each item's id vector by ``n / (n + id_backoff)`` for its training count ``n`` (int (n_items,))."""
        if self.id_gate is None:
            return
        n = torch.as_tensor(np.asarray(counts, dtype=np.float32), device=self.id_gate.device)
        if n.shape != (self.n_items,):
            raise ValueError(f"counts must have shape ({self.n_items},), got {tuple(n.shape)}")
        with torch.no_grad():
            self.id_gate[1:] = n / (n + self.id_backoff)
            self.id_gate[0] = 0.0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens int64 (...) -> float32 (..., dim); padding tokens give zeros."""
        vec = self.id_embedding(tokens)
        if self.id_gate is not None:
            vec = vec * self.id_gate[tokens].unsqueeze(-1)
        if self.training and self.id_dropout > 0:
            keep = (torch.rand(tokens.shape, device=tokens.device) >= self.id_dropout).unsqueeze(-1)
            vec = vec * keep
        if self.content_proj is not None:
            vec = vec + self.content_proj(self.content[tokens])
        return vec

    def all_items(self) -> torch.Tensor:
        """Vectors of every item: float32 (n_items, dim), row ``i`` = item index ``i``."""
        return self(torch.arange(1, self.n_items + 1, device=self.id_embedding.weight.device))

    def table(self) -> torch.Tensor:
        """What :meth:`forward` gives each token, as a (n_items + 1, dim) table (row 0, padding: zeros):
        a frozen model's history lookups are then one gather. Eval mode, no autograd."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                return torch.cat([torch.zeros(1, self.dim, device=self.id_embedding.weight.device), self.all_items()])
        finally:
            self.train(was)

    def from_content(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cold-start vectors from content only: features float32 (m, n_features) -> (m, dim)."""
        f = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.id_embedding.weight.device)
        if f.ndim != 2 or f.shape[1] != self.n_features:
            raise ValueError(f"features must have shape (m, {self.n_features}), got {tuple(f.shape)}")
        if self.content_proj is None:
            return torch.zeros(f.shape[0], self.dim, device=f.device)
        return self.content_proj(f)
