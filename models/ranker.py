"""Click-probability ranker that re-ranks the two-tower model's retrieved candidates.

The classic neural scorer: the **elementwise product** of the user vector and
the item vector (``combine="concat"`` feeds their concatenation instead) goes
through Dense(50, ReLU) and Dense(1, sigmoid) and gives p(click). It is trained
with binary cross-entropy on retrieved candidates: in the ads scenario a shown
candidate the user then clicked is a positive, the other shown ones negatives.
On logged data without impressions (MovieLens) the "shown" candidates are the
two-tower's top-N for a user and the "click" is the user's next item.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.base import NotFittedError, Recommender, mask_rows, top_k
from models.data.dataset import Interactions, ItemCatalog, Split, leave_last_out
from models.train.loop import seed_everything

log = logging.getLogger(__name__)


class ClickRanker(nn.Module):
    """p(click) = sigmoid(Dense1(relu(Dense50(combine(u, v))))); u, v float32 (n, dim) -> logits (n,)."""

    def __init__(self, dim: int, hidden: int = 50, combine: Literal["product", "concat"] = "product") -> None:
        super().__init__()
        if combine not in ("product", "concat"):
            raise ValueError(f"combine must be 'product' or 'concat', got {combine!r}")
        self.combine = combine
        n_in = dim if combine == "product" else 2 * dim
        self.hidden = nn.Linear(n_in, hidden)
        self.out = nn.Linear(hidden, 1)
        # Per-feature scale of the combined input, set from training data: raw
        # products of trained embeddings are tiny and would stall the ReLU layer.
        self.register_buffer("input_scale", torch.ones(n_in))

    def combined(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The layer's input before scaling: float32 (n, dim) product or (n, 2 dim) concatenation."""
        return user * item if self.combine == "product" else torch.cat([user, item], dim=-1)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        x = self.combined(user, item) * self.input_scale
        return self.out(F.relu(self.hidden(x))).squeeze(-1)

    @torch.no_grad()
    def predict_proba(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """float32 (n,) click probabilities for row-aligned user and item vectors (n, dim)."""
        logits = self(torch.as_tensor(user, dtype=torch.float32), torch.as_tensor(item, dtype=torch.float32))
        return torch.sigmoid(logits).numpy().astype(np.float32)


@dataclass(frozen=True)
class RankerConfig:
    hidden: int = 50
    combine: Literal["product", "concat"] = "product"
    n_candidates: int = 50
    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2  # share of users held out for early stopping on log-loss
    patience: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Impressions:
    """Row-aligned (user index, item index, clicked) triples: int64, int64, float32 in {0, 1}."""

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray


def retrieve(user_vectors: np.ndarray, item_vectors: np.ndarray, n: int, exclude: Any = None) -> np.ndarray:
    """Top-``n`` item indices by dot product, int64 (len(users), n); ``exclude`` CSR rows drop items."""
    scores = user_vectors @ item_vectors.T
    if exclude is not None:
        mask_rows(scores, exclude)
    return top_k(scores, n)


def make_impressions(
    users: np.ndarray, candidates: np.ndarray, clicked: np.ndarray
) -> Impressions:
    """One row per (user, shown candidate); label 1 where the candidate is the user's clicked item."""
    n = candidates.shape[1]
    user = np.repeat(np.asarray(users, dtype=np.int64), n)
    item = candidates.reshape(-1).astype(np.int64)
    label = (candidates == np.asarray(clicked)[:, None]).reshape(-1).astype(np.float32)
    return Impressions(user, item, label)


def train_ranker(
    user_vectors: np.ndarray, item_vectors: np.ndarray, data: Impressions, config: RankerConfig
) -> ClickRanker:
    """Fit a :class:`ClickRanker` with BCE and Adam on ``data`` (vectors indexed by its user / item columns)."""
    seed_everything(config.seed)
    if data.label.sum() == 0 or data.label.sum() == len(data.label):
        raise ValueError("ranker training data needs both clicked and not-clicked rows")
    model = ClickRanker(item_vectors.shape[1], config.hidden, config.combine)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    users = np.unique(data.user)
    rng = np.random.default_rng(config.seed)
    held = np.isin(data.user, rng.choice(users, size=int(len(users) * config.holdout), replace=False))
    u = torch.as_tensor(user_vectors[data.user])
    v = torch.as_tensor(item_vectors[data.item])
    y = torch.as_tensor(data.label)
    fit_rows = torch.as_tensor(np.flatnonzero(~held))
    val_rows = torch.as_tensor(np.flatnonzero(held))
    with torch.no_grad():
        model.input_scale.copy_(1.0 / model.combined(u[fit_rows], v[fit_rows]).std(dim=0).clamp_min(1e-6))
        # Start at the base click rate, so early steps learn the ranking, not the bias.
        rate = float(y[fit_rows].mean())
        model.out.bias.fill_(float(np.log(rate / (1 - rate))))
    gen = torch.Generator().manual_seed(config.seed)
    best, best_state, bad = float("inf"), copy.deepcopy(model.state_dict()), 0
    for epoch in range(config.epochs):
        model.train()
        perm = fit_rows[torch.randperm(len(fit_rows), generator=gen)]
        for start in range(0, len(perm), config.batch_size):
            rows = perm[start : start + config.batch_size]
            loss = F.binary_cross_entropy_with_logits(model(u[rows], v[rows]), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if len(val_rows) == 0:
            best_state = copy.deepcopy(model.state_dict())
            continue
        model.eval()
        with torch.no_grad():
            val = float(F.binary_cross_entropy_with_logits(model(u[val_rows], v[val_rows]), y[val_rows]))
        log.debug("ranker_epoch=%d val_logloss=%.5f", epoch, val)
        if val < best:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model


def auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks); NaN with one class only."""
    from scipy.stats import rankdata

    pos = label > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(label: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))


class RankedTwoTower(Recommender):
    """Two-tower retrieval of the top ``n_candidates``, re-ranked by a :class:`ClickRanker`.

    Trains (or reuses, when ``base`` is already fitted) a two-tower model; the
    ranker learns from validation impressions (histories = train, click = the
    validation item). ``metrics`` holds AUC / log-loss of the ranker and of the
    raw two-tower score on held-out test impressions (histories = train + valid).
    Items outside the candidates keep their two-tower order below the re-ranked ones.
    """

    kind = "ranker"

    def __init__(self, base: Recommender | None = None, config: RankerConfig | None = None,
                 name: str | None = None, **base_overrides: Any) -> None:
        from models.train.recommender import TwoTowerRecommender

        self.base = base if base is not None else TwoTowerRecommender(**base_overrides)
        self.config = config or RankerConfig()
        self.name = name or f"{self.base.name}+ranker"
        self.ranker: ClickRanker | None = None
        self.histories: list[np.ndarray] = []
        self.metrics: dict[str, float] = {}

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> RankedTwoTower:
        split = split_or_train if isinstance(split_or_train, Split) else leave_last_out(split_or_train, catalog)
        if getattr(self.base, "trained", None) is None:
            self.base.fit(split, catalog)
        tt = self.base.trained
        items = tt.item_embeddings
        n = self.config.n_candidates
        # Impressions come from the histories a live system had at the time, never test.
        train_seqs = split.train.sequences()
        vu = split.valid.user
        u_valid = tt.model.user_vectors([train_seqs[u] for u in vu])
        cands = retrieve(u_valid, items, n, split.train.matrix(binary=True)[vu])
        data = make_impressions(np.arange(len(vu)), cands, split.valid.item)
        self.ranker = train_ranker(u_valid, items, data, self.config)
        self.metrics = self._held_out_metrics(split, tt)
        self.histories = train_seqs
        log.info("ranker name=%s train_rows=%d train_clicks=%d %s", self.name, len(data.label), int(data.label.sum()),
                 " ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()))
        return self

    def _held_out_metrics(self, split: Split, tt: Any) -> dict[str, float]:
        hist = split.train.concat(split.valid)
        seqs = hist.sequences()
        tu = split.test.user
        u_test = tt.model.user_vectors([seqs[u] for u in tu])
        cands = retrieve(u_test, tt.item_embeddings, self.config.n_candidates, hist.matrix(binary=True)[tu])
        data = make_impressions(np.arange(len(tu)), cands, split.test.item)
        prob = self.ranker.predict_proba(u_test[data.user], tt.item_embeddings[data.item])
        dot = np.einsum("nd,nd->n", u_test[data.user], tt.item_embeddings[data.item])
        return {"test_auc": auc(data.label, prob), "test_logloss": log_loss(data.label, prob),
                "two_tower_auc": auc(data.label, dot), "test_click_rate": float(data.label.mean())}

    def fold_in(self, history: Interactions) -> None:
        self.histories = history.sequences()

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.ranker is None:
            raise NotFittedError(f"{self.name}: call fit() before score()")
        tt = self.base.trained
        users = np.asarray(users, dtype=np.int64)
        u = tt.model.user_vectors([self.histories[x] for x in users])
        scores = (u @ tt.item_embeddings.T).astype(np.float32)
        seen = scores.copy()
        for r, x in enumerate(users):
            seen[r, self.histories[x]] = -np.inf
        cands = top_k(seen, self.config.n_candidates)
        rows = np.repeat(np.arange(len(users)), cands.shape[1])
        prob = self.ranker.predict_proba(u[rows], tt.item_embeddings[cands.reshape(-1)])
        # Candidates sit above every other item, ordered by click probability.
        top = np.nanmax(np.where(np.isfinite(scores), scores, np.nan), axis=1, keepdims=True)
        scores[rows, cands.reshape(-1)] = (top[rows, 0] + 1.0 + prob).astype(np.float32)
        return scores
