"""Streaming (prequential) evaluation: replay interactions in time order, test then train.

For each event, the model is asked for the top-k it would have shown that
user just before the event; the event counts as a hit when its item is in
that list. Only then does the model learn from the event. Scores are
reported per time window, next to an item-kNN trained once on the warm-up
period whose table is never updated (a nightly job that missed the day's
events), queried with the same live recent items.
"""

from __future__ import annotations

import abc
import logging
import math
from collections import deque
from typing import Any, Collection

import numpy as np
from tqdm.auto import tqdm

from models.baselines.knn import ItemKNN
from models.data.dataset import Interactions, ItemCatalog

log = logging.getLogger(__name__)


class OnlineRecommender(abc.ABC):
    """A model that learns one event at a time."""

    name: str = "online"

    @abc.abstractmethod
    def recommend(self, user: int, k: int, exclude: Collection[int]) -> np.ndarray:
        """Up to ``k`` item indices, int64, best first, none of them in ``exclude``."""

    @abc.abstractmethod
    def update(self, user: int, item: int, weight: float) -> None:
        """Learn from one event; ``weight`` <= 0 (a skip) must not count as a positive."""


class OnlineItemKNN(OnlineRecommender):
    """Item co-occurrence counted incrementally over each user's last ``window`` items.

    score(j) = sum over the user's recent items h of C[h, j] / sqrt(n_h * n_j)
    (cosine on co-occurrence); users without history get the most popular
    items. Memory: a dense (n_items, n_items) float32.
    """

    name = "online-itemknn"

    def __init__(self, n_items: int, window: int = 20) -> None:
        if n_items < 1 or window < 1:
            raise ValueError(f"need n_items >= 1 and window >= 1, got {n_items}, {window}")
        self.n_items, self.window = n_items, window
        self._cooc = np.zeros((n_items, n_items), dtype=np.float32)
        self._count = np.zeros(n_items, dtype=np.float32)
        self._recent: dict[int, deque[int]] = {}

    def recommend(self, user: int, k: int, exclude: Collection[int]) -> np.ndarray:
        recent = self._recent.get(user)
        # A tiny popularity term breaks ties among items no recent item co-occurred with.
        scores = self._count * 1e-6
        if recent:
            h = np.fromiter(recent, dtype=np.int64)
            inv = 1.0 / np.sqrt(np.maximum(self._count, 1.0))
            scores = scores + (self._cooc[h] * inv[h, None]).sum(axis=0) * inv
        return _top(scores, k, exclude)

    def update(self, user: int, item: int, weight: float) -> None:
        if weight <= 0:
            return
        recent = self._recent.setdefault(user, deque(maxlen=self.window))
        if recent:
            h = np.fromiter(recent, dtype=np.int64)
            np.add.at(self._cooc[item], h, 1.0)
            np.add.at(self._cooc[:, item], h, 1.0)
        self._count[item] += 1.0
        recent.append(item)


class FrozenItemKNN(OnlineRecommender):
    """A batch-fitted ``ItemKNN`` whose similarities never change; the user's recent items are live.

    This is what serving a nightly-trained item-kNN looks like: the query is
    the user's last ``window`` items as they arrive, the item-item table and
    the popularity fallback are those of training time.
    """

    def __init__(self, model: ItemKNN, train: Interactions, window: int = 20) -> None:
        if model.similarity is None:
            raise ValueError("fit the ItemKNN first")
        self.name = f"batch-{model.name}"
        self._sim = model.similarity
        self._pop = np.bincount(train.item, minlength=train.n_items).astype(np.float32) * 1e-6
        self._recent: dict[int, deque[int]] = {}
        self.window = window

    def recommend(self, user: int, k: int, exclude: Collection[int]) -> np.ndarray:
        recent = self._recent.get(user)
        scores = self._pop
        if recent:
            # ravel: ItemKNN's similarity is a sparse matrix above its dense size limit.
            scores = scores + np.asarray(self._sim[np.fromiter(recent, dtype=np.int64)].sum(axis=0)).ravel()
        return _top(scores, k, exclude)

    def update(self, user: int, item: int, weight: float) -> None:
        """Only the user's recent items move; the model learns nothing until the next training run."""
        if weight > 0:
            self._recent.setdefault(user, deque(maxlen=self.window)).append(item)


def _top(scores: np.ndarray, k: int, exclude: Collection[int]) -> np.ndarray:
    scores = scores.copy()
    if exclude:
        scores[np.fromiter(exclude, dtype=np.int64)] = -np.inf
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    part = part[np.lexsort((part, -scores[part]))]
    return part[np.isfinite(scores[part])].astype(np.int64)


def replay(
    interactions: Interactions,
    catalog: ItemCatalog,
    online: OnlineRecommender | None = None,
    batch: bool = True,
    window: int = 20,
    warmup: float = 0.5,
    n_windows: int = 5,
    k: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Prequential HR@k / NDCG@k of ``online`` (and a batch item-kNN) over time windows.

    The first ``warmup`` fraction of events (time order) trains the batch
    item-kNN (``batch``) and warms the online model without scoring. Each later event is scored
    against the top-``k`` each model held for the user just before it, then
    learnt by the online model. Events whose item the user already had are
    not scored (both models exclude known items). Returns
    ``{"protocol", "online": {...}, "batch": {...}, "windows": [...]}``.
    """
    if not 0 < warmup < 1:
        raise ValueError(f"warmup must be in (0, 1), got {warmup}")
    n = len(interactions)
    cut = int(n * warmup)
    if cut == 0 or cut == n:
        raise ValueError(f"too few events ({n}) to split at warmup={warmup}")
    online = online if online is not None else OnlineItemKNN(interactions.n_items, window=window)
    models: dict[str, OnlineRecommender] = {"online": online}
    if batch:
        head = interactions.subset(np.arange(n) < cut)
        models["batch"] = FrozenItemKNN(ItemKNN().fit(head, catalog), head, window=window)

    seen: dict[int, set[int]] = {}
    users, items, weights = interactions.user, interactions.item, interactions.weight
    for i in range(cut):
        u, it = int(users[i]), int(items[i])
        for model in models.values():
            model.update(u, it, float(weights[i]))
        seen.setdefault(u, set()).add(it)

    rows = np.arange(cut, n)
    window_of = np.minimum(((rows - cut) * n_windows) // max(1, n - cut), n_windows - 1)
    hit = {name: np.zeros(n - cut) for name in models}
    gain = {name: np.zeros(n - cut) for name in models}
    scored = np.zeros(n - cut, dtype=bool)
    for j, i in enumerate(tqdm(rows, desc="replay", disable=not progress, leave=False)):
        u, it = int(users[i]), int(items[i])
        known = seen.setdefault(u, set())
        if it not in known:
            scored[j] = True
            for name, model in models.items():
                top = model.recommend(u, k, known)
                pos = np.flatnonzero(top == it)
                if pos.size:
                    hit[name][j] = 1.0
                    gain[name][j] = 1.0 / math.log2(pos[0] + 2)
        for model in models.values():
            model.update(u, it, float(weights[i]))
        known.add(it)

    ts = interactions.timestamp
    windows = []
    for w in range(n_windows):
        sel = (window_of == w) & scored
        idx = rows[window_of == w]
        entry: dict[str, Any] = {
            "window": w,
            "start_ms": int(ts[idx[0]]) if idx.size else None,
            "end_ms": int(ts[idx[-1]]) if idx.size else None,
            "events": int(sel.sum()),
        }
        for name in models:
            entry[f"{name}_hr@{k}"] = float(hit[name][sel].mean()) if sel.any() else float("nan")
            entry[f"{name}_ndcg@{k}"] = float(gain[name][sel].mean()) if sel.any() else float("nan")
        windows.append(entry)
    out: dict[str, Any] = {
        "protocol": {
            "replay": "prequential: score each event against the user's top-k just before it, then learn",
            "warmup_fraction": warmup,
            "warmup_events": cut,
            "scored_events": int(scored.sum()),
            "skipped_repeat_events": int((~scored).sum()),
            "k": k,
            "online_model": online.name,
            "batch_model": models["batch"].name if "batch" in models else None,
        },
        "windows": windows,
    }
    for name in models:
        out[name] = {f"hr@{k}": float(hit[name][scored].mean()), f"ndcg@{k}": float(gain[name][scored].mean())}
    log.info("replay events=%d scored=%d %s", n - cut, int(scored.sum()),
             " ".join(f"{name}_hr@{k}={out[name][f'hr@{k}']:.4f}" for name in models))
    return out


def format_windows(result: dict[str, Any]) -> str:
    """A Markdown table of the per-window figures."""
    k = result["protocol"]["k"]
    names = [n for n in ("online", "batch") if n in result]
    header = ["window", "events", *(f"{n} HR@{k}" for n in names), *(f"{n} NDCG@{k}" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for w in [*result["windows"], None]:
        if w is None:
            cells = ["all", str(result["protocol"]["scored_events"]),
                     *(f"{result[n][f'hr@{k}']:.4f}" for n in names), *(f"{result[n][f'ndcg@{k}']:.4f}" for n in names)]
        else:
            cells = [str(w["window"]), str(w["events"]), *(f"{w[f'{n}_hr@{k}']:.4f}" for n in names),
                     *(f"{w[f'{n}_ndcg@{k}']:.4f}" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
