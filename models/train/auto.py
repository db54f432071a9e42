"""Choose the two-tower model that wins on held-out data, within a time budget.

No setting here was tuned on one data set. Three kinds of choice:

* **Rules from the data's shape** (:func:`data_settings`): the loss (full softmax
  up to :data:`FULL_SOFTMAX_MAX_ITEMS` items, in-batch sampled softmax with logQ
  correction above), the history length (what 90% of the training histories
  fit in, between :data:`MIN_HISTORY` and the configured ``max_len``) and the
  batch size (about :data:`POSITIONS_PER_STEP` training positions per step, so a
  step carries as much signal on sessions of three clicks as on long histories).
* **Measured on validation** (:func:`select_two_tower`): every user tower of
  :data:`AUTO_TOWERS`; when the catalogue describes its items, each with ids and
  content (TF-IDF of titles, text and tags; id vectors backing off to content for
  rare items, :data:`CONTENT_ID_BACKOFF`) plus the mean tower content first
  (:data:`CONTENT_FIRST_BACKOFF`), else with ids only. The winner is the candidate
  with the best validation NDCG@10 (each user's second-to-last item; test is
  never looked at).
* **The bar**: the baselines of :data:`BASELINES` that are registered, scored on
  the same validation items, so the selection says how the winner compares with
  the best of them.

The budget is spent by successive halving: ``1 + ceil(log2(n))`` rounds of equal
time for ``n`` candidates; every candidate still in trains for its share of a
round (the round's time left divided by the candidates left, so one that stops
early leaves its time to the next), then the better half goes on to the next
round, resuming where it stopped (weights and optimizer state), until one
trains alone in the last round. A candidate keeps its best epoch so far.
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
AUTO_TOWERS: tuple[str, ...] = ("mean", "sasrec", "gru", "cnn")
CONTENT_KIND = "tfidf"
# With content, an item seen n times keeps n / (n + b) of its id vector. Two item towers are
# tried: ids with content (b=5: content fills in for items seen a few times, an item seen a
# hundred times is nearly ids only) and content first (b=100: ids only for items seen hundreds
# of times). On a sparse catalogue (Taobao: most items seen once or twice) ids alone learn
# little and content carries the item.
CONTENT_ID_BACKOFF = 5.0
CONTENT_FIRST_BACKOFF = 100.0
# Every registered baseline but BPR (minutes on larger data, never the best here).
BASELINES: tuple[str, ...] = ("pop", "itemknn", "userknn", "content", "als", "sknn", "vsknn", "sr", "ar")
DEFAULT_TIME_BUDGET_S = 900.0
MIN_SHARE_S = 1.0
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
    rounds: int = 0  # successive-halving rounds it trained in

    @property
    def score(self) -> float:
        return self.valid.get(METRIC, -1.0) if self.error is None else -1.0

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        return {"name": self.name, "tower": c.tower, "content": c.content, "loss": c.loss, "max_len": c.max_len,
                "batch_size": c.batch_size, "valid": {k: round(v, 6) for k, v in self.valid.items()},
                "train_s": round(self.train_s, 1), "epochs_run": self.epochs_run, "best_epoch": self.best_epoch,
                "id_backoff": c.id_backoff, "out_of_time": self.out_of_time, "rounds": self.rounds, "error": self.error}


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


def candidate_plan(split: Split, base: TrainConfig, towers: Sequence[str] = AUTO_TOWERS,
                   content: bool | None = None) -> list[tuple[str, TrainConfig]]:
    """``(name, config)`` of every candidate, with :func:`data_settings` over ``base``.

    ``content`` (default: :func:`has_content` of the catalogue): each tower with ids
    and content, plus the mean tower (or the first tower) content first; else ids only.
    """
    if not towers:
        raise ValueError("no candidate towers")
    rules = data_settings(split, base.max_len)
    content = has_content(split.catalog) if content is None else content
    if not content:
        return [(t, dataclasses.replace(base, tower=t, content="none", **rules)) for t in towers]
    plan = [(f"{t}+{CONTENT_KIND}", dataclasses.replace(base, tower=t, content=CONTENT_KIND,
                                                         id_backoff=CONTENT_ID_BACKOFF, **rules)) for t in towers]
    first = "mean" if "mean" in towers else towers[0]
    plan.append((f"{first}+{CONTENT_KIND}-first", dataclasses.replace(
        base, tower=first, content=CONTENT_KIND, id_backoff=CONTENT_FIRST_BACKOFF, **rules)))
    return plan


def halving_rounds(n: int) -> int:
    """Rounds of successive halving for ``n`` candidates: halve (rounding up) until one is left."""
    return 1 + math.ceil(math.log2(n)) if n > 1 else 1


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
    from models.train import loop

    if time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s}")
    base = base or TrainConfig()
    started = time.perf_counter()
    plan = candidate_plan(split, base, towers)
    results = [Candidate(name=name, config=config) for name, config in plan]
    trained: dict[str, Any] = {}
    n_rounds = halving_rounds(len(results))
    alive = list(results)
    for r in range(n_rounds):
        end = started + time_budget_s * (r + 1) / n_rounds
        todo = [c for c in alive if c.rounds == 0 or (c.name in trained and trained[c.name].checkpoint)]
        for i, cand in enumerate(todo):
            share = max(MIN_SHARE_S, (end - time.perf_counter()) / (len(todo) - i))
            _train(cand, dataclasses.replace(cand.config, time_budget_s=share), trained, split, loop, init_for)
        ranked = sorted((c for c in alive if c.error is None), key=lambda c: c.score, reverse=True)
        keep = ranked[:math.ceil(len(ranked) / 2)] if r < n_rounds - 1 else ranked[:1]
        for c in alive:
            if c not in keep and c.name in trained:
                trained[c.name].checkpoint = None  # out of the race: free its optimizer state
        alive = keep
        if len(alive) <= 1 and not any(c.name in trained and trained[c.name].checkpoint for c in alive):
            break  # the last one finished early: nothing left to spend the budget on
    ok = [c for c in results if c.error is None]
    if not ok:
        raise RuntimeError(f"every candidate failed: {[c.error for c in results]}")
    winner = max(ok, key=lambda c: c.score)
    trained[winner.name].checkpoint = None

    scores, best_model = _baselines_on_valid(split, baselines)
    selection = Selection(winner=winner.name, candidates=results, baselines=scores, time_budget_s=time_budget_s,
                          seconds=time.perf_counter() - started,
                          rules={**{k: getattr(plan[0][1], k) for k in ("loss", "max_len", "batch_size")},
                                 "content_stage": plan[0][1].content != "none", "rounds": n_rounds})
    log.info("selection winner=%s valid_%s=%.4f best_baseline=%s", winner.name, METRIC,
             winner.valid.get(METRIC, float("nan")), selection.best_baseline)
    return trained[winner.name], selection, best_model


def _train(cand: Candidate, config: TrainConfig, trained: dict[str, Any], split: Split, loop: Any,
           init_for: Callable[[TrainConfig], Init | None] | None) -> None:
    """One round of one candidate: from scratch (or the warm start) the first time, else resumed."""
    previous = trained.get(cand.name)
    t0 = time.perf_counter()
    try:
        if previous is None:
            model = loop.train_two_tower(split, config, init=init_for(config) if init_for else None)
        else:
            model = loop.train_two_tower(split, config, resume=previous.checkpoint)
    except (RuntimeError, ValueError, MemoryError) as e:  # one failed candidate must not end the selection
        cand.error = f"{type(e).__name__}: {e}"[:300]
        log.warning("candidate failed name=%s error=%s", cand.name, cand.error)
        trained.pop(cand.name, None)
    else:
        trained[cand.name] = model
        m = model.metrics
        cand.valid = {k: float(v) for k, v in m.get("valid", {}).items()}
        cand.epochs_run, cand.best_epoch = m.get("epochs_run", 0), m.get("best_epoch", -1)
        cand.out_of_time = bool(m.get("out_of_time"))
    cand.train_s += time.perf_counter() - t0
    cand.rounds += 1
    log.info("candidate name=%s round=%d valid_%s=%.4f train_s=%.0f epochs=%d out_of_time=%s", cand.name,
             cand.rounds, METRIC, cand.valid.get(METRIC, float("nan")), cand.train_s, cand.epochs_run,
             cand.out_of_time)


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
