"""The periodic trainer: snapshot the topics, train, gate on quality, publish a version.

One run (:func:`train_once`): read the training window of events (as columns,
:mod:`stream.trainer.snapshot`) and the catalogue from Kafka,
clean them and split each user's tail off (leave-last-out), train a two-tower
model with early stopping on validation (warm-started from the served version
when its towers fit), evaluate it on the held-out tail and
evaluate the version being served on the *same* tail; publish only when the
new one is not worse by more than ``margin`` NDCG@10. Publishing writes a
checksummed artifact folder (towers, id maps, features, item vectors, index),
signed with ``STREAMREC_ARTIFACT_KEY`` when set, and announces it on
``model-updates``, where every worker picks it up.

"The version being served" is what a starting worker serves: the newest
announced version that loads and verifies (:func:`verified_announcement`), the
same checks as the worker's (models.artifacts.load_version), so a bad last
announcement never makes the trainer gate against nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kafka import KafkaProducer

from models.base import Recommender
from models.data.columns import interactions_from_columns
from models.data.dataset import Interactions, ItemCatalog, Split, leave_last_out
from models.evaluate.ranking import evaluate
from models.train.config import TrainConfig, trainer_config
from models.train.loop import train_two_tower
from models.train.recommender import TwoTowerRecommender
from models.train.warm import warm_start_from
from stream.core.announcements import ModelAnnouncement
from stream.core.experiments import announcements_of, parse_model_update
from stream.core.topics import EVENTS, MODEL_UPDATES
from stream.errors import ConfigError, InvalidRecord
from stream.kafka.config import kafka_python_options
from stream.kafka.reader import read_range
from stream.settings import Settings
from stream.trainer.snapshot import SnapshotReport, snapshot_events, snapshot_items

if TYPE_CHECKING:
    from index import IndexConfig

log = logging.getLogger(__name__)


@dataclass
class TrainRun:
    """What one trainer run did."""

    published: bool
    reason: str
    version: str | None = None
    path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    current_version: str | None = None
    current_metrics: dict[str, float] | None = None
    events: int = 0
    invalid_events: int = 0
    users: int = 0
    items: int = 0
    seconds: float = 0.0
    warm_started: bool = False
    tower: str | None = None
    selection: dict[str, Any] | None = None
    baseline: str | None = None
    baseline_metrics: dict[str, float] | None = None
    snapshot: SnapshotReport | None = None  # the training window: offsets, time span, read time, invalid by reason

    def summary(self) -> str:
        new = self.metrics.get("ndcg@10")
        old = (self.current_metrics or {}).get("ndcg@10")
        bar = (self.baseline_metrics or {}).get("ndcg@10")
        chosen = ""
        if self.selection is not None:
            chosen = (f"chose={self.selection['winner']} of {len(self.selection['candidates'])} candidates "
                      f"best_baseline={self.baseline} best_baseline_ndcg@10={bar if bar is None else round(bar, 4)} ")
        return (f"{'published ' + str(self.version) if self.published else 'not published'} ({self.reason}); "
                f"events={self.events} invalid={self.invalid_events} users={self.users} items={self.items} "
                f"tower={self.tower} ndcg@10={new if new is None else round(new, 4)} {chosen}"
                f"current={self.current_version} current_ndcg@10={old if old is None else round(old, 4)} "
                f"warm_start={self.warm_started} seconds={self.seconds:.1f}{self._window()}")

    def _window(self) -> str:
        snap = self.snapshot
        if snap is None:
            return ""
        reasons = ",".join(f"{k}:{v}" for k, v in sorted(snap.invalid_reasons.items())) or "none"
        return (f" window_offsets={snap.offsets} window_first_ms={snap.first_ms} window_last_ms={snap.last_ms} "
                f"read_seconds={snap.read_seconds:.1f} invalid_reasons={reasons}")

    def choice(self) -> dict[str, Any] | None:
        """The selection, compact, for the announcement: who won, on which figures, against which baseline."""
        if self.selection is None:
            return None
        new, bar = self.metrics.get("ndcg@10"), (self.baseline_metrics or {}).get("ndcg@10")
        return {
            "winner": self.selection["winner"],
            "test_ndcg@10": new, "best_baseline": self.baseline, "best_baseline_test_ndcg@10": bar,
            "vs_best_baseline": round(new / bar - 1.0, 4) if new is not None and bar else None,
            "valid_ndcg@10": {c["name"]: c["valid"].get("ndcg@10") for c in self.selection["candidates"]},
            "baselines_valid_ndcg@10": self.selection["baselines_valid"],
            "seconds": self.selection["seconds"], "time_budget_s": self.selection["time_budget_s"],
        }


def artifact_key(settings: Settings) -> bytes | None:
    """``STREAMREC_ARTIFACT_KEY`` as bytes, ``None`` when unset (versions are then neither signed nor checked)."""
    return settings.artifact_key.get_secret_value().encode() if settings.artifact_key is not None else None


def announcements(settings: Settings) -> list[ModelAnnouncement]:
    """Every valid announcement on ``model-updates``, oldest first, an experiment's promotion of an
    arm's version included (:func:`stream.core.experiments.promotion`); invalid records are skipped."""
    updates = []
    for record in asyncio.run(read_range(settings, settings.topic(MODEL_UPDATES))):
        try:
            updates.append(parse_model_update(record.value))
        except InvalidRecord:
            continue
    return announcements_of(updates)


def latest_announcement(settings: Settings) -> ModelAnnouncement | None:
    """The newest valid announcement on ``model-updates``, or ``None``, whether or not its version
    verifies (:func:`verified_announcement` is the one the trainer gates on)."""
    found = announcements(settings)
    return found[-1] if found else None


def verified_announcement(settings: Settings) -> tuple[ModelAnnouncement, Any] | None:
    """The newest announcement whose version loads and verifies, with its ``LoadedModel``; ``None`` when none does.

    Walks back ``model-updates`` past versions refused (each logged with its reason), as a
    starting worker does: the version found is the one the workers serve.
    """
    from models.artifacts import ArtifactError, load_version

    key = artifact_key(settings)
    tried: set[str] = set()
    for announcement in reversed(announcements(settings)):
        if announcement.version in tried:
            continue
        tried.add(announcement.version)
        try:
            return announcement, load_version(settings.artifacts_dir, announcement.version, key=key)
        except ArtifactError as e:
            log.warning("announced version refused version=%s reason=%s error=%s", announcement.version,
                        e.reason, str(e)[:300])
        except OSError as e:
            log.warning("announced version refused version=%s reason=unreadable error=%s", announcement.version, e)
    return None


def announce(settings: Settings, version: str, path: Path, metrics: dict[str, float], extra: dict | None = None) -> None:
    """Publish a version announcement on ``model-updates`` (acknowledged before returning).

    ``extra`` may name ``users``, ``items`` and ``tower`` (and other fields, kept as written).
    """
    extra = dict(extra or {})
    known = {name: extra.pop(name) for name in ("users", "items", "tower") if name in extra}
    announcement = ModelAnnouncement(version=version, created_ms=int(time.time() * 1000), metrics=metrics,
                                     path=str(path.resolve()), extra=extra, **known)
    producer = KafkaProducer(**kafka_python_options(settings), acks="all", allow_auto_create_topics=False)
    try:
        producer.send(settings.topic(MODEL_UPDATES), key=version.encode(), value=announcement.encode()).get(timeout=30)
    finally:
        producer.close(timeout=10)


class LoadedArtifactRecommender(Recommender):
    """A served version scored on a new split: its towers over the split's ids.

    Items the version does not know score ``-inf`` (it cannot recommend them),
    history items it does not know are skipped: exactly what serving does.
    """

    kind = "two_tower"

    def __init__(self, loaded: Any, split: Split) -> None:
        self.name = f"current:{loaded.manifest.get('version')}"
        self.loaded = loaded
        known = {item: i for i, item in enumerate(loaded.items.ids)}
        self.to_loaded = np.array([known.get(item, -1) for item in split.train.items.ids], dtype=np.int64)
        self.histories: list[np.ndarray] = split.train.sequences()

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> LoadedArtifactRecommender:
        return self

    def fold_in(self, history: Interactions) -> None:
        self.histories = history.sequences()

    def score(self, users: np.ndarray) -> np.ndarray:
        emb = self.loaded.item_embeddings
        known = self.to_loaded >= 0
        out = np.full((len(users), len(self.to_loaded)), -np.inf, dtype=np.float32)
        for row, u in enumerate(np.asarray(users, dtype=np.int64)):
            hist = self.to_loaded[self.histories[int(u)]] if int(u) < len(self.histories) else np.zeros(0, np.int64)
            hist = hist[hist >= 0]
            if len(hist) == 0:
                continue
            vec = self.loaded.encode_user(hist)
            out[row, known] = emb[self.to_loaded[known]] @ vec
        return out


def _test_metrics(model: Recommender, split: Split) -> dict[str, float]:
    model.fold_in(split.train.concat(split.valid))
    result = evaluate(model, split, on="test", ks=(10,))
    return {k: float(v) for k, v in result.items()}


def _index_builder(vectors: np.ndarray, item_ids: tuple[str, ...], folder: Path, config: IndexConfig) -> None:
    """save_artifact's hook (``config`` bound): the version's item index, built as STREAMREC_INDEX_* say."""
    from index import build_index, save_index

    index = build_index(np.ascontiguousarray(vectors, dtype=np.float32),
                        np.arange(len(item_ids), dtype=np.int64), config)
    save_index(index, folder, overwrite=True)  # save_artifact created the folder


def train_once(settings: Settings, config: TrainConfig | None = None, margin: float = 0.005,
               min_users: int = 10, publish: bool = True, warm_start: bool = True,
               select: str | None = None, time_budget_s: float | None = None,
               progress: bool | None = None, nproc: int = 1) -> TrainRun:
    """One trainer run against the configured cluster (see the module docstring).

    ``config`` defaults to :func:`models.train.config.trainer_config` (the CLI's defaults too).
    ``select`` (default ``STREAMREC_TRAIN_SELECT``): ``auto`` trains the candidates of
    :mod:`models.train.auto` within ``time_budget_s`` (default
    ``STREAMREC_TRAIN_TIME_BUDGET_S``) and keeps the best on validation, ``config``
    giving the settings the selection does not choose; ``fixed`` trains ``config``
    exactly. With ``warm_start``, a candidate starts from the served version's
    weights when its towers have the same shape (item rows matched by item id);
    otherwise from scratch. ``progress`` (default ``config.progress``): progress bars while
    reading the window and the catalogue (:mod:`stream.trainer.snapshot`). ``nproc`` > 1 trains
    ``config`` on that many processes with DDP, each on a disjoint shard of the users
    (:mod:`models.train.sharded`); the selection then defaults to ``fixed`` (the automatic
    choice trains on one process).
    """
    from models.artifacts import save_artifact

    started = time.perf_counter()
    config = config or trainer_config()
    select = select or ("fixed" if nproc > 1 else settings.train_select)
    if nproc > 1 and select == "auto":
        raise ConfigError("training on several processes (--nproc) trains one configuration: use --select fixed")
    progress = config.progress if progress is None else progress
    columns, snap = snapshot_events(settings, progress=progress)
    run = TrainRun(published=False, reason="", events=len(columns), invalid_events=snap.invalid, snapshot=snap)
    if not len(columns):
        run.reason = "no events to train on"
        run.seconds = time.perf_counter() - started
        return run
    interactions, catalog, _ = interactions_from_columns(columns, snapshot_items(settings, progress=progress),
                                                         name=settings.topic(EVENTS))
    del columns  # the interactions hold what training needs
    split = leave_last_out(interactions, catalog)
    run.users, run.items = len(interactions.users), len(interactions.items)
    if int((np.bincount(split.test.user, minlength=run.users) > 0).sum()) < min_users:
        run.reason = f"fewer than {min_users} users with a held-out tail"
        run.seconds = time.perf_counter() - started
        return run

    found = verified_announcement(settings)
    loaded = None
    if found is not None:
        current, loaded = found
        run.current_version = current.version

    def warm(cfg: TrainConfig) -> bool:
        return warm_start and loaded is not None and (loaded.config.tower, loaded.config.dim) == (cfg.tower, cfg.dim)

    def init_for(cfg: TrainConfig) -> Any:
        return warm_start_from(loaded.model, loaded.items, interactions.items) if warm(cfg) else None

    candidate = TwoTowerRecommender(config)
    if select == "auto":
        from models.train.auto import select_two_tower

        budget = time_budget_s if time_budget_s is not None else settings.train_time_budget_s
        candidate.trained, selection, baseline = select_two_tower(split, config, budget, init_for=init_for)
        candidate.config = candidate.trained.config
        run.selection = selection.as_dict()
        if baseline is not None:
            run.baseline, run.baseline_metrics = selection.best_baseline, _test_metrics(baseline, split)
    elif nproc > 1:
        from models.train.sharded import train_across_processes

        candidate.trained = train_across_processes(split, config, nproc, init=init_for(config))
    else:
        candidate.trained = train_two_tower(split, config, init=init_for(config))
    run.tower = candidate.config.tower
    run.warm_started = warm(candidate.config)
    run.metrics = _test_metrics(candidate, split)
    if loaded is not None:
        run.current_metrics = _test_metrics(LoadedArtifactRecommender(loaded, split), split)
    if run.current_metrics is not None and run.metrics["ndcg@10"] < run.current_metrics["ndcg@10"] - margin:
        run.reason = "worse than the version being served"
    elif not publish:
        run.reason = "publishing disabled"
    else:
        trained = candidate.trained
        trained.metrics = {**trained.metrics, "test": run.metrics, "events": run.events}
        if run.selection is not None:
            trained.metrics["selection"] = {**run.selection, "test": run.choice()}
        run.path = save_artifact(trained, settings.artifacts_dir,
                                 index_builder=functools.partial(_index_builder, config=settings.index_config()),
                                 key=artifact_key(settings))
        run.version = run.path.name
        extra: dict[str, Any] = {"users": run.users, "items": run.items, "tower": run.tower}
        if run.selection is not None:
            extra["selection"] = run.choice()
        announce(settings, run.version, run.path, run.metrics, extra)
        run.published = True
        run.reason = "first version" if run.current_version is None else "not worse than the version served"
    run.seconds = time.perf_counter() - started
    log.info("trainer run %s", run.summary())
    return run
