"""Choose the two-tower model that wins on held-out data, within a time budget.

No setting here was tuned on one data set. Three kinds of choice:

* **Rules from the data's shape** (:func:`data_settings`): the loss (full softmax
  up to :data:`FULL_SOFTMAX_MAX_ITEMS` items, in-batch sampled softmax with logQ
  correction above), the history length (what 90% of the training histories
  fit in, between :data:`MIN_HISTORY` and the configured ``max_len``) and the
  batch size (about :data:`POSITIONS_PER_STEP` training positions per step, so a
  step carries as much signal on sessions of three clicks as on long histories).
* **Measured on validation** (:func:`select_two_tower`): every user tower of
  :data:`AUTO_TOWERS` with ids only, then, when the catalogue describes its items,
  the best one with ids and content (TF-IDF of titles, text and tags; id vectors
  backing off to content for rare items, :data:`CONTENT_ID_BACKOFF`) and the mean
  tower content first (:data:`CONTENT_FIRST_BACKOFF`). The winner is the
  candidate with the best validation NDCG@10 (each user's second-to-last item;
  test is never looked at).
* **The bar**: the baselines of :data:`BASELINES` that are registered, scored on
  the same validation items, so the selection says how the winner compares with
  the best of them.

The budget is shared out as training goes: the candidates get
:data:`EXPLORE_SHARE` of it, each the time left divided by the candidates left
(so one that stops early leaves its time to the next); a candidate stopped by
its share keeps its best epoch so far. When the winner was stopped so, it goes
on training from its best weights for the rest of the budget, and the longer
run is kept if it does better on validation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from models.base import Recommender
from models.data.dataset import Interactions, ItemCatalog, Split, leave_last_out
from models.evaluate.ranking import evaluate
from models.train.config import TrainConfig
from models.train.recommender import TwoTowerRecommender

log = logging.getLogger(__name__)

FULL_SOFTMAX_MAX_ITEMS = 20_000
POSITIONS_PER_STEP = 1_600  # 32 windows of 50 positions: a MovieLens step with the report's settings
MIN_BATCH, MAX_BATCH = 32, 1_024
MIN_HISTORY = 8
AUTO_TOWERS: tuple[str, ...] = ("mean", "sasrec", "gru")
CONTENT_KIND = "tfidf"
# With content, an item seen n times keeps n / (n + b) of its id vector. Two item towers are
# tried: ids with content (b=5: content fills in for items seen a few times) and content first
# (b=100: ids only for items seen hundreds of times). On a sparse catalogue (Taobao: most items
# seen once or twice) ids alone learn little and content carries the item.
CONTENT_ID_BACKOFF = 5.0
CONTENT_FIRST_BACKOFF = 100.0
# Every registered baseline but BPR (minutes on larger data, never the best here).
BASELINES: tuple[str, ...] = ("pop", "itemknn", "userknn", "content", "als", "sknn", "vsknn", "sr", "ar")
DEFAULT_TIME_BUDGET_S = 900.0
EXPLORE_SHARE = 0.6  # of the budget, for the candidates; the rest goes on training the winner
MIN_CONTINUE_S = 1.0
METRIC = "ndcg@10"

Init = Callable[[Any], Any]


def data_settings(split: Split, max_len: int = 50) -> dict[str, Any]:
    """``loss``, ``max_len`` and ``batch_size`` from the training data's shape (see the module docstring)."""
    lengths = np.bincount(split.train.user, minlength=split.train.n_users)
    lengths = lengths[lengths >= 2]
    if len(lengths) == 0:
        raise ValueError("no training history has 2 items or more")
    history = int(min(max_len, max(MIN_HISTORY, math.ceil(float(np.quantile(lengths, 0.9))))))
    positions = lengths - 1
    windows = np.ceil(positions / history)
    per_window = float(positions.sum() / windows.sum())
    batch = int(min(MAX_BATCH, max(MIN_BATCH, round(POSITIONS_PER_STEP / per_window))))
    loss = "full_softmax" if split.train.n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled_softmax"
    return {"loss": loss, "max_len": history, "batch_size": batch}


def has_content(catalog: ItemCatalog) -> bool:
    """Whether items carry text or tags beyond their id (a catalogue of ids alone has nothing to learn from)."""
    described = sum(1 for i, (title, text, tags) in enumerate(zip(catalog.title, catalog.text, catalog.tags))
                    if tags or (text and text != catalog.items.ids[i]) or title != catalog.items.ids[i])
    return described >= max(1, len(catalog) // 2)


@dataclass
class Candidate:
    """One trained candidate: its settings and what it scored on validation."""

    name: str
    config: TrainConfig
    valid: dict[str, float] = field(default_factory=dict)
    train_s: float = 0.0
    epochs_run: int = 0
    best_epoch: int = -1
    out_of_time: bool = False
    error: str | None = None
    continued_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        return {"name": self.name, "tower": c.tower, "content": c.content, "loss": c.loss, "max_len": c.max_len,
                "batch_size": c.batch_size, "valid": {k: round(v, 6) for k, v in self.valid.items()},
                "train_s": round(self.train_s, 1), "epochs_run": self.epochs_run, "best_epoch": self.best_epoch,
                "out_of_time": self.out_of_time, "continued_s": round(self.continued_s, 1), "error": self.error}


@dataclass
class Selection:
    """What :func:`select_two_tower` tried and chose; ``baselines``: validation NDCG@10 by name."""

    winner: str
    candidates: list[Candidate]
    baselines: dict[str, float]
    time_budget_s: float
    seconds: float
    rules: dict[str, Any]

    @property
    def best_baseline(self) -> str | None:
        return max(self.baselines, key=self.baselines.__getitem__) if self.baselines else None

    @property
    def winner_candidate(self) -> Candidate:
        return next(c for c in self.candidates if c.name == self.winner)

    def as_dict(self) -> dict[str, Any]:
        best = self.best_baseline
        won = self.winner_candidate.valid.get(METRIC, 0.0)
        bar = self.baselines.get(best) if best else None
        return {
            "winner": self.winner, "metric": f"valid {METRIC}", "winner_valid": round(won, 6),
            "best_baseline": best, "best_baseline_valid": None if bar is None else round(bar, 6),
            "vs_best_baseline": None if not bar else round(won / bar - 1.0, 4),
            "baselines_valid": {k: round(v, 6) for k, v in self.baselines.items()},
            "candidates": [c.as_dict() for c in self.candidates],
            "rules": self.rules, "time_budget_s": self.time_budget_s, "seconds": round(self.seconds, 1),
        }


def candidate_plan(split: Split, base: TrainConfig, towers: Sequence[str] = AUTO_TOWERS) -> list[TrainConfig]:
    """The first stage's configs: each tower, ids only, with :func:`data_settings` over ``base``."""
    rules = data_settings(split, base.max_len)
    return [dataclasses.replace(base, tower=t, content="none", **rules) for t in towers]


def select_two_tower(
    split: Split,
    base: TrainConfig | None = None,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    towers: Sequence[str] = AUTO_TOWERS,
    baselines: Sequence[str] = BASELINES,
    init_for: Callable[[TrainConfig], Init | None] | None = None,
) -> tuple[Any, Selection, Recommender | None]:
    """Train the candidates on ``split.train``, pick the best on ``split.valid``.

    ``init_for(config)``: a warm start for a candidate (or ``None``), e.g. from the
    version being served when its towers fit. Returns ``(trained, selection,
    best_baseline)``: the winner's :class:`models.train.loop.TrainedModel`, what was
    tried, and the best baseline fitted on the same split (``None`` when no
    baseline of ``baselines`` is registered), so callers can score it beside the
    winner on test.
    """
    from models.train.loop import train_two_tower

    if time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s}")
    base = base or TrainConfig()
    started = time.perf_counter()
    final = started + time_budget_s
    deadline = started + EXPLORE_SHARE * time_budget_s  # the candidates'; the winner may go on after it
    plan = candidate_plan(split, base, towers)
    content_stage = has_content(split.catalog)
    trained: dict[str, Any] = {}
    results: list[Candidate] = []

    def run(config: TrainConfig, left: int) -> None:
        name = config.tower if config.content == "none" else f"{config.tower}+{config.content}"
        if config.content != "none" and config.id_backoff >= CONTENT_FIRST_BACKOFF:
            name += "-first"
        share = max(1.0, (deadline - time.perf_counter()) / max(left, 1))
        config = dataclasses.replace(config, time_budget_s=share)
        cand = Candidate(name=name, config=config)
        t0 = time.perf_counter()
        try:
            model = train_two_tower(split, config, init=init_for(config) if init_for else None)
        except (RuntimeError, ValueError, MemoryError) as e:  # one failed candidate must not end the selection
            cand.error = f"{type(e).__name__}: {e}"[:300]
            log.warning("candidate failed name=%s error=%s", name, cand.error)
        else:
            trained[name] = model
            m = model.metrics
            cand.valid = {k: float(v) for k, v in m.get("valid", {}).items()}
            cand.epochs_run, cand.best_epoch = m.get("epochs_run", 0), m.get("best_epoch", -1)
            cand.out_of_time = bool(m.get("out_of_time"))
        cand.train_s = time.perf_counter() - t0
        results.append(cand)
        log.info("candidate name=%s valid_%s=%.4f train_s=%.0f epochs=%d out_of_time=%s", name, METRIC,
                 cand.valid.get(METRIC, float("nan")), cand.train_s, cand.epochs_run, cand.out_of_time)

    stages = len(plan) + (2 if content_stage else 0)
    for n, config in enumerate(plan):
        run(config, stages - n)
    ok = [c for c in results if c.error is None]
    if not ok:
        raise RuntimeError(f"every candidate failed: {[c.error for c in results]}")
    if content_stage and time.perf_counter() < deadline:
        best = max(ok, key=lambda c: c.valid.get(METRIC, -1.0))
        # The best tower with ids and content, and the mean tower (cheap) content first: on a
        # sparse catalogue the ids-only scores say little about what content would do.
        mean = next(c.config for c in ok if c.config.tower == "mean") if any(
            c.config.tower == "mean" for c in ok) else best.config
        with_content = [(best.config, CONTENT_ID_BACKOFF), (mean, CONTENT_FIRST_BACKOFF)]
        for n, (config, backoff) in enumerate(with_content):
            if time.perf_counter() >= deadline:
                break
            run(dataclasses.replace(config, content=CONTENT_KIND, id_backoff=backoff), len(with_content) - n)
        ok = [c for c in results if c.error is None]
    winner = max(ok, key=lambda c: c.valid.get(METRIC, -1.0))
    if winner.out_of_time and final - time.perf_counter() >= MIN_CONTINUE_S:
        _continue(winner, trained, split, final, train_two_tower)

    scores, best_model = _baselines_on_valid(split, baselines)
    selection = Selection(winner=winner.name, candidates=results, baselines=scores, time_budget_s=time_budget_s,
                          seconds=time.perf_counter() - started,
                          rules={**{k: getattr(plan[0], k) for k in ("loss", "max_len", "batch_size")},
                                 "content_stage": content_stage})
    log.info("selection winner=%s valid_%s=%.4f best_baseline=%s", winner.name, METRIC,
             winner.valid.get(METRIC, float("nan")), selection.best_baseline)
    return trained[winner.name], selection, best_model


def _continue(winner: Candidate, trained: dict[str, Any], split: Split, final: float, train: Any) -> None:
    """Go on training the winner (stopped by its share of the budget) until ``final``; keep it if better."""
    previous = trained[winner.name]
    config = dataclasses.replace(winner.config, time_budget_s=max(1.0, final - time.perf_counter()))
    t0 = time.perf_counter()
    try:
        model = train(split, config, init=lambda m: m.load_state_dict(previous.model.state_dict()))
    except (RuntimeError, ValueError, MemoryError) as e:
        log.warning("continuing the winner failed name=%s error=%s", winner.name, e)
        return
    m = model.metrics
    winner.train_s += time.perf_counter() - t0
    winner.continued_s = time.perf_counter() - t0
    better = m.get("valid", {}).get(METRIC, -1.0) > winner.valid.get(METRIC, -1.0)
    log.info("continued name=%s valid_%s=%.4f -> %.4f kept=%s", winner.name, METRIC, winner.valid.get(METRIC, -1.0),
             m.get("valid", {}).get(METRIC, -1.0), better)
    if better:
        trained[winner.name] = model
        winner.valid = {k: float(v) for k, v in m["valid"].items()}
        winner.best_epoch = winner.epochs_run + m.get("best_epoch", 0)
        winner.out_of_time = bool(m.get("out_of_time"))
    winner.epochs_run += m.get("epochs_run", 0)


def _baselines_on_valid(split: Split, names: Sequence[str]) -> tuple[dict[str, float], Recommender | None]:
    from models.evaluate.registry import available_models, make_model

    scores: dict[str, float] = {}
    models: dict[str, Recommender] = {}
    for name in (n for n in names if n in available_models()):
        try:
            model = make_model(name).fit(split, split.catalog)
            scores[name] = float(evaluate(model, split, on="valid", ks=(10,))[METRIC])
            models[name] = model
        except (MemoryError, ValueError, RuntimeError) as e:
            log.warning("baseline failed name=%s error=%s", name, e)
    if not scores:
        return scores, None
    best = max(scores, key=scores.__getitem__)
    return scores, models[best]


class AutoRecommender(TwoTowerRecommender):
    """The trainer's automatic choice as a :class:`Recommender` (registered as ``auto``).

    ``selection`` (after ``fit``) says what was tried and what won; scoring is the winner's.
    """

    def __init__(self, config: TrainConfig | None = None, time_budget_s: float = DEFAULT_TIME_BUDGET_S,
                 towers: Sequence[str] = AUTO_TOWERS, baselines: Sequence[str] = BASELINES,
                 **overrides: Any) -> None:
        super().__init__(config, name="auto", **overrides)
        self.time_budget_s, self.towers, self.baselines = time_budget_s, tuple(towers), tuple(baselines)
        self.selection: Selection | None = None

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> AutoRecommender:
        split = split_or_train if isinstance(split_or_train, Split) else leave_last_out(split_or_train, catalog)
        self.trained, self.selection, _ = select_two_tower(split, self.config, self.time_budget_s, self.towers,
                                                           self.baselines)
        return self

    def report(self) -> dict[str, Any]:
        """What the evaluation report adds to this model's row: the selection."""
        return {"selection": self.selection.as_dict()} if self.selection else {}
