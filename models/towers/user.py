"""User towers: encoders of a user's recent history into one vector.

Every tower takes a **left-padded** batch of tokens, int64 (b, L), where a token
is ``item index + 1`` and ``0`` is padding (see :func:`models.towers.to_tokens`),
plus optional per-event weights float32 (b, L). The latest event is the last
column. ``forward`` returns float32 (b, dim); ``forward_sequence`` returns the
causal output after every position, float32 (b, L, dim), zero at padding, which
sequence-to-sequence training uses. The output does not depend on how much
left padding there is, and position ``t`` depends only on positions ``<= t``.

The towers embed history items with the shared :class:`ItemTower`, so an item
the worker has only content for still contributes to a user's vector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.towers.item import ItemTower

log = logging.getLogger(__name__)


class UserTower(nn.Module):
    """Base class: embedding, masking, the cheap ``encode`` path; subclasses define ``_encode``."""

    kind: str = ""

    def __init__(self, item_tower: ItemTower, max_len: int = 50, dropout: float = 0.2) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.item_tower = item_tower
        self.dim = item_tower.dim
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)

    def forward_sequence(self, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """tokens int64 (b, L), weights float32 (b, L) or None -> float32 (b, L, dim), zero at padding."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (b, L), got {tuple(tokens.shape)}")
        mask = tokens != 0
        x = self.item_tower(tokens)
        w = mask.to(x.dtype) if weights is None else weights.to(x.dtype) * mask
        out = self._encode(x, w, mask)
        return out * mask.unsqueeze(-1)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """tokens int64 (b, L) left-padded -> float32 (b, dim); an all-padding row gives zeros."""
        return self.forward_sequence(tokens, weights)[:, -1]

    def _encode(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What :meth:`forward` returns without weights, from **right-padded** embedded histories:
        ``x`` float32 (b, L, dim) (the item tower's output, or a frozen table's rows), row ``r``'s
        events in ``x[r, :lengths[r]]``, ``lengths`` int64 (b,) at least 1 -> float32 (b, dim).
        The serving path: towers may compute only what the last event's position needs."""
        b, L = x.shape[:2]
        mask = torch.arange(L, device=x.device).unsqueeze(0) >= (L - lengths).unsqueeze(1)
        left = _right_to_left(x, lengths)
        return self._encode(left, mask.to(x.dtype), mask)[:, -1]

    @torch.no_grad()
    def encode(self, history: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """One user's vector from chronological item indices (the last ``max_len`` are used).

        Returns float32 (dim,). Runs in eval mode without autograd: the worker's per-event path.
        """
        idx = np.asarray(history, dtype=np.int64)[-self.max_len :]
        device = self.item_tower.id_embedding.weight.device
        tokens = torch.as_tensor(idx + 1, device=device).unsqueeze(0)
        w = None
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float32)[-self.max_len :], device=device).unsqueeze(0)
            if w.shape != tokens.shape:
                raise ValueError(f"weights must match history, got {tuple(w.shape)} vs {tuple(tokens.shape)}")
        was_training = self.training
        self.eval()
        try:
            if tokens.shape[1] == 0:
                return np.zeros(self.dim, dtype=np.float32)
            return self(tokens, w)[0].float().cpu().numpy()
        finally:
            self.train(was_training)


class MeanUserTower(UserTower):
    """Weighted mean of the history's item vectors, then a linear map (identity at start).

    Weights may be negative (a skip pushes the mean away); the mean divides by the sum of |w|.
    """

    kind = "mean"

    def __init__(self, item_tower: ItemTower, max_len: int = 50, dropout: float = 0.2) -> None:
        super().__init__(item_tower, max_len, dropout)
        self.proj = nn.Linear(self.dim, self.dim)
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def _encode(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        num = torch.cumsum(self.dropout(x) * w.unsqueeze(-1), dim=1)
        den = torch.cumsum(w.abs(), dim=1).clamp_min(1e-6).unsqueeze(-1)
        return self.proj(num / den)


def _left_to_right(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's last ``length`` steps to the front: (b, L, ...) left- to right-padded."""
    b, L = x.shape[:2]
    idx = (torch.arange(L, device=x.device).unsqueeze(0) + (L - lengths).unsqueeze(1)) % L
    return torch.gather(x, 1, idx.view(b, L, *([1] * (x.ndim - 2))).expand_as(x))


def _right_to_left(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_left_to_right`."""
    b, L = x.shape[:2]
    idx = (torch.arange(L, device=x.device).unsqueeze(0) - (L - lengths).unsqueeze(1)) % L
    return torch.gather(x, 1, idx.view(b, L, *([1] * (x.ndim - 2))).expand_as(x))


class GRUUserTower(UserTower):
    """A GRU (GRU4Rec-style) over the history; input embeddings scaled by the weights."""

    kind = "gru"

    def __init__(self, item_tower: ItemTower, max_len: int = 50, dropout: float = 0.2, n_layers: int = 1) -> None:
        super().__init__(item_tower, max_len, dropout)
        self.gru = nn.GRU(self.dim, self.dim, num_layers=n_layers, batch_first=True)
        self.out = nn.Linear(self.dim, self.dim)

    def _encode(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # A GRU's state moves even on zero input, so padding must come after the
        # real steps, where it cannot reach them: run right-padded, then move back.
        lengths = mask.sum(1)
        h, _ = self.gru(_left_to_right(self.dropout(x * w.unsqueeze(-1)), lengths))
        return self.out(self.dropout(_right_to_left(h, lengths)))

    def encode_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().encode_last(x, lengths)
        h, _ = self.gru(x)  # right-padded already: the steps after a row's last event never reach it
        return self.out(h[torch.arange(x.shape[0], device=x.device), lengths - 1])


class CNNUserTower(UserTower):
    """Causal dilated 1-D convolutions with residuals (NextItNet-style)."""

    kind = "cnn"

    def __init__(
        self,
        item_tower: ItemTower,
        max_len: int = 50,
        dropout: float = 0.2,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        super().__init__(item_tower, max_len, dropout)
        self.kernel_size = kernel_size
        self.dilations = tuple(dilations)
        self.convs = nn.ModuleList(nn.Conv1d(self.dim, self.dim, kernel_size, dilation=d) for d in self.dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(self.dim) for _ in self.dilations)

    def _encode(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        h = self.dropout(x * w.unsqueeze(-1))
        for conv, norm, d in zip(self.convs, self.norms, self.dilations, strict=True):
            # Left-only zero padding keeps it causal; re-masking after each layer
            # keeps biases at padded steps from leaking into real ones.
            y = conv(F.pad(h.transpose(1, 2), ((self.kernel_size - 1) * d, 0))).transpose(1, 2)
            h = norm(h + self.dropout(F.gelu(y))) * m
        return h


class SASRecUserTower(UserTower):
    """Causal self-attention (SASRec-style, pre-norm), positions counted from the first real event."""

    kind = "sasrec"

    def __init__(
        self,
        item_tower: ItemTower,
        max_len: int = 50,
        dropout: float = 0.2,
        n_layers: int = 2,
        n_heads: int = 1,
    ) -> None:
        super().__init__(item_tower, max_len, dropout)
        self.n_heads = n_heads
        self.pos = nn.Embedding(max_len, self.dim)
        layer = nn.TransformerEncoderLayer(
            self.dim, n_heads, dim_feedforward=self.dim, dropout=dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(self.dim)

    def _encode(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(*self._inputs(x, w, mask)))

    def _inputs(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's input and the attention mask (True: blocked), (b * heads, L, L)."""
        b, L = mask.shape
        lengths = mask.sum(1, keepdim=True)
        # Positions from the first real event, so left padding never shifts them.
        pos = (torch.arange(L, device=x.device).unsqueeze(0) - (L - lengths)).clamp(0, self.max_len - 1)
        h = self.dropout(x * w.unsqueeze(-1) * self.dim**0.5 + self.pos(pos)) * mask.unsqueeze(-1)
        ar = torch.arange(L, device=x.device)
        future = ar.unsqueeze(0) > ar.unsqueeze(1)  # (q, k): key after query
        blocked = future.unsqueeze(0) | ~mask.unsqueeze(1)
        # Every query may see itself, so a padded query has one key and no NaN.
        blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=x.device).unsqueeze(0)
        return h, blocked.repeat_interleave(self.n_heads, dim=0)

    def encode_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Right-padded, a causal mask alone is exact: a real position only sees earlier ones, all
        # real, so no per-user mask is built and attention takes its causal kernel. Every layer
        # but the last runs over the whole sequence (its outputs are the last layer's keys), the
        # last for each user's last event alone (a third of the work at two layers). Eval mode:
        # no dropout. Equal to forward()[:, -1] (tests/unit/models/test_towers.py).
        if self.training:
            return super().encode_last(x, lengths)
        b, L, _ = x.shape
        steps = torch.arange(L, device=x.device)
        real = steps.unsqueeze(0) < lengths.unsqueeze(1)
        h = (x * self.dim**0.5 + self.pos(steps.clamp(max=self.max_len - 1))) * real.unsqueeze(-1)
        causal = steps.unsqueeze(0) > steps.unsqueeze(1)  # (q, k): key after query
        layers = list(self.encoder.layers)
        for layer in layers[:-1]:
            h = layer(h, src_mask=causal, is_causal=True)
        last = layers[-1]  # pre-norm (norm_first=True), as built above
        keys = last.norm1(h)
        rows, at = torch.arange(b, device=x.device), lengths - 1
        query = keys[rows, at].unsqueeze(1)
        attended = last.self_attn(query, keys, keys, key_padding_mask=~real, need_weights=False)[0][:, 0]
        out = h[rows, at] + attended
        out = out + last.linear2(last.activation(last.linear1(last.norm2(out))))
        return self.norm(out)


USER_TOWERS: dict[str, type[UserTower]] = {
    "mean": MeanUserTower,
    "gru": GRUUserTower,
    "cnn": CNNUserTower,
    "sasrec": SASRecUserTower,
}


def make_user_tower(kind: str, item_tower: ItemTower, **kwargs: object) -> UserTower:
    """Build the user tower named ``kind`` (one of :data:`USER_TOWERS`)."""
    try:
        cls = USER_TOWERS[kind]
    except KeyError:
        raise ValueError(f"unknown user tower kind={kind!r}; choose from {sorted(USER_TOWERS)}") from None
    return cls(item_tower, **kwargs)  # type: ignore[arg-type]
