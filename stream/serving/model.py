"""What recommendations are computed from: one version of towers, item vectors and index.

A :class:`ServingModel` is built either from a trained artifact (the trainer's
towers and item vectors) or, before any training, from the catalogue alone
(``content-v0``: hashed content vectors, and a recency-weighted mean of the
history's item vectors as the user vector). The worker holds exactly one at a
time in a :class:`ModelHolder`; a batch or an HTTP request reads the holder
once and computes everything from that one version, so no response mixes two.
New catalogue items are added to the current version's index in place (cold
start); a new version replaces the whole object.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from index import IndexConfig, build_index, load_index
from models.bootstrap import BOOTSTRAP_VERSION, HashedContentEncoder
from stream.core.experiments import Experiment
from stream.core.state import recency_weighted_means

log = logging.getLogger(__name__)

VERBS = {"play": "played", "click": "clicked", "like": "liked", "cart": "added", "purchase": "bought", "skip": "skipped"}
POPULAR = "popular right now"
_KIND_ORDER = ("flat", "hnsw", "ivf", "ivfpq")  # the kinds IndexConfig.resolve_kind gives as catalogues grow
_item_of = itemgetter(0)
_weight_of = itemgetter(3)


class ContentEncoder(Protocol):
    """Vectors for catalogue records from their content (title, text, tags)."""

    def encode_items(self, items: list[Mapping[str, Any]]) -> np.ndarray: ...


# (histories of item positions, oldest first; their weights) -> float32 (n, d), NaN rows for "no vector"
UserEncoder = Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]


@dataclass
class Histories:
    """The histories of a batch of users, flattened, from :meth:`ServingModel.histories`.

    User ``u``'s rows are ``rows[bounds[u]:bounds[u + 1]]`` (``[item_id, type, ts,
    weight]``, oldest first); ``positions`` and ``weights`` hold each row's item
    position in the model (-1: unknown to it) and its weight.
    """

    rows: list[Sequence[Any]]
    bounds: np.ndarray  # int64 (n_users + 1,)
    positions: np.ndarray  # int64 (n_rows,)
    weights: np.ndarray  # float64 (n_rows,)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def consumed(self, user: int) -> set[str]:
        """Item ids of user ``user``'s history (what ``UserState.consumed()`` returns)."""
        return {h[0] for h in self.rows[self.bounds[user]:self.bounds[user + 1]]}

    def known_positions(self, users: Sequence[int]) -> list[np.ndarray]:
        """Per user of ``users``: the distinct known item positions of their history, sorted
        (what :meth:`ServingModel.search` makes of ``consumed()``); one sort for a whole batch."""
        edges = self.bounds.tolist()
        if len(users) < 4:
            out = []
            for u in users:
                mine = self.positions[edges[u]:edges[u + 1]]
                out.append(np.unique(mine[mine >= 0]))
            return out
        users_arr = np.asarray(users, dtype=np.int64)
        starts = self.bounds[users_arr]
        lengths = self.bounds[users_arr + 1] - starts
        first = np.cumsum(lengths) - lengths  # where each user's rows start among the selected
        rows = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - first, lengths)
        owner = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
        positions = self.positions[rows]
        known = positions >= 0
        span = int(positions.max(initial=0)) + 1
        keys = np.unique(owner[known] * span + positions[known])
        cuts = [0, *np.searchsorted(keys, np.arange(1, len(users), dtype=np.int64) * span).tolist(), len(keys)]
        keys %= span
        return [keys[a:b] for a, b in zip(cuts, cuts[1:])]


@dataclass
class ServingModel:
    """Item ids, their vectors, the index over them and the encoders of one model version."""

    model_version: str
    index_version: str
    item_ids: list[str]
    vectors: np.ndarray  # float32 (n_items, dim), row i = item_ids[i]
    index: Any  # index.VectorIndex over int64 ids = row numbers; None while the catalogue is empty
    content_encoder: ContentEncoder
    user_encoder: UserEncoder | None = None  # None: recency-weighted mean of item vectors
    titles: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    index_config: IndexConfig = field(default_factory=IndexConfig)  # builds the index when the first items come

    def __post_init__(self) -> None:
        self.positions = {item: i for i, item in enumerate(self.item_ids)}
        self._store = self.vectors  # :attr:`vectors` is a view of its first rows; it grows by doubling
        # Each position's category (a code of category_codes, -1: none), for query-time filters.
        self.category_codes: dict[str, int] = {}
        self._category = np.full(max(len(self.item_ids), 1024), -1, dtype=np.int32)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.positions

    # --- catalogue ----------------------------------------------------------------
    def add_items(self, items: Sequence[Mapping[str, Any]] | Iterable[Sequence[Mapping[str, Any]]],
                  chunked: bool = False) -> int:
        """Add or refresh catalogue records (cold start); returns how many items were new.

        New items get vectors from their content and enter the index at once;
        known items only refresh their title. ``chunked``: ``items`` is an iterable of
        record lists (a large catalogue decoded a chunk at a time, so its dicts never
        all live at once); the index is still updated, or rebuilt, once at the end.
        """
        chunks = items if chunked else [items]
        start = len(self.item_ids)
        for chunk in chunks:
            fresh: dict[str, Mapping[str, Any]] = {}
            for it in chunk:
                item_id = str(it["item_id"])
                if it.get("title"):
                    self.titles[item_id] = str(it["title"])
                if item_id not in self.positions:
                    fresh[item_id] = it  # the last record of an id repeated in one call wins
                else:
                    self._category[self.positions[item_id]] = self._category_code(it.get("category"))
            if not fresh:
                continue
            self._append_vectors(np.ascontiguousarray(self.content_encoder.encode_items(list(fresh.values())),
                                                      dtype=np.float32))
            if len(self.item_ids) + len(fresh) > self._category.size:
                grown = np.full(max(2 * self._category.size, len(self.item_ids) + len(fresh)), -1, dtype=np.int32)
                grown[:self._category.size] = self._category
                self._category = grown
            for item_id, it in fresh.items():
                self._category[len(self.item_ids)] = self._category_code(it.get("category"))
                self.positions[item_id] = len(self.item_ids)
                self.item_ids.append(item_id)
        added = len(self.item_ids) - start
        if added:
            self._index_new_rows(start)
        return added

    def _category_code(self, category: Any) -> int:
        if not category:
            return -1
        return self.category_codes.setdefault(str(category), len(self.category_codes))

    def category_of(self, item_id: str) -> str | None:
        """The category of a live item (``None``: none given, or the item is unknown)."""
        position = self.positions.get(item_id)
        if position is None:
            return None
        code = int(self._category[position])
        return next((name for name, c in self.category_codes.items() if c == code), None) if code >= 0 else None

    def in_category(self, category: str) -> np.ndarray:
        """Positions of the live items of ``category``, sorted (empty: no such live item)."""
        code = self.category_codes.get(category)
        if code is None:
            return np.zeros(0, dtype=np.int64)
        found = np.flatnonzero(self._category[:len(self.item_ids)] == code).astype(np.int64)
        if found.size and self.index is not None:
            found = found[self.index.contains(found)]  # items taken down stay out
        return found

    def _index_new_rows(self, start: int) -> None:
        """Put rows ``start..`` (just appended) into the index: built, grown, or rebuilt at the
        kind the settings choose for the new size."""
        ids = np.arange(start, len(self.item_ids), dtype=np.int64)
        vecs = self.vectors[start:]
        if self.index is None:
            self.index = build_index(np.ascontiguousarray(vecs), ids, self.index_config)
        elif (_KIND_ORDER.index(self.index_config.resolve_kind(len(self.positions))) > _KIND_ORDER.index(self.index.kind)
              or self.index.outgrown(len(self.positions))):
            # Grown past what its kind is for (a flat index of a trained version's items taking a
            # large catalogue in), or past how it was built (IVF lists sized for a tenth of the
            # items): rebuilt at the kind and size the settings choose for the new size.
            every = np.sort(np.fromiter(self.positions.values(), dtype=np.int64, count=len(self.positions)))
            before = self.index.kind
            self.index = build_index(np.ascontiguousarray(self.vectors[every]), every, self.index_config)
            log.info("index rebuilt for the catalogue's size kind=%s->%s items=%d", before, self.index.kind,
                     len(every))
        else:
            self.index.add(np.ascontiguousarray(vecs), ids)

    def _append_vectors(self, vecs: np.ndarray) -> None:
        # Doubling capacity: adding a catalogue a batch at a time costs O(n), not O(n^2) copies. Rows
        # below the current length never change, so a view taken earlier stays valid.
        n, extra = self.vectors.shape[0], vecs.shape[0]
        if self._store.shape[0] < n + extra or self._store.shape[1] != vecs.shape[1]:
            store = np.empty((max(2 * n, n + extra, 1024), vecs.shape[1]), dtype=np.float32)
            store[:n] = self.vectors
            self._store = store
        self._store[n:n + extra] = vecs
        self.vectors = self._store[:n + extra]

    def remove_items(self, item_ids: Sequence[str]) -> int:
        """Take items down (catalogue tombstones): out of the index, unknown to this version from now
        on, so never recommended, searched or explained again; returns how many were known.

        Their rows stay in :attr:`vectors` (positions do not move); a later catalogue record of
        the same id adds it again under a new position.
        """
        gone = [self.positions.pop(i) for i in item_ids if i in self.positions]
        if gone and self.index is not None:
            self.index.remove(np.asarray(gone, dtype=np.int64))
        for i in item_ids:
            self.titles.pop(i, None)
        return len(gone)

    # --- users -------------------------------------------------------------------
    def histories(self, histories: Sequence[Sequence[Sequence[Any]]]) -> Histories:
        """Flatten a batch of histories (``[item_id, type, ts, weight]`` rows, oldest first) and look
        their items up once (see :class:`Histories`)."""
        rows = list(chain.from_iterable(histories))
        bounds = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, histories), dtype=np.int64, count=len(histories)), out=bounds[1:])
        n = len(rows)
        positions = np.fromiter(map(self.positions.get, map(_item_of, rows), repeat(-1)), dtype=np.int64, count=n)
        weights = np.fromiter(map(_weight_of, rows), dtype=np.float64, count=n)
        return Histories(rows, bounds, positions, weights)

    def vectors_of(self, histories: Histories) -> list[np.ndarray | None]:
        """A vector per user of ``histories``.

        Items unknown to this version are ignored; a user whose history gives no
        positive signal gets ``None`` (served trending items instead).
        """
        known = histories.positions >= 0
        if known.all():
            positions, weights, bounds = histories.positions, histories.weights, histories.bounds
        else:
            positions, weights = histories.positions[known], histories.weights[known]
            bounds = np.concatenate([[0], np.cumsum(known)])[histories.bounds]
        weights = weights.astype(np.float32)
        if self.user_encoder is not None:
            cuts = bounds[1:-1]
            out = self.user_encoder(np.split(positions, cuts), np.split(weights, cuts))
            return [None if not np.isfinite(row).all() else row.astype(np.float32) for row in out]
        return recency_weighted_means(self.vectors, positions, weights, bounds)

    # --- retrieval ---------------------------------------------------------------
    def search_positions(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray | set[int]],
        allowed: np.ndarray | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Top-``k`` per query row, never an item position of the row's ``exclude``, best first:
        per row the positions found and their scores (fewer than ``k`` when the catalogue runs out).
        ``allowed``: only these positions (a query-time filter, applied inside the search)."""
        if len(queries) == 0:
            return [], []
        if self.index is None:
            return [[] for _ in range(len(queries))], [[] for _ in range(len(queries))]
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is not None:
            scores, ids = self.index.search_among(q, k, allowed, exclude=list(exclude))
        else:
            scores, ids = self.index.search(q, k, exclude=list(exclude))
        ids_rows, score_rows = ids.tolist(), scores.tolist()
        for r, row in enumerate(ids_rows):
            if row and min(row) < 0:  # fewer than k found: padded with -1
                keep = [j for j, i in enumerate(row) if i >= 0]
                ids_rows[r] = [row[j] for j in keep]
                score_rows[r] = [score_rows[r][j] for j in keep]
        return ids_rows, score_rows

    def reasons(self, histories: Histories, users: Sequence[int], recommended: Sequence[Sequence[int]]
                ) -> list[list[str]]:
        """Why each item was recommended: for each ``users[j]`` (a user of ``histories``), one
        reason per item position of ``recommended[j]``: the positive history item whose vector
        is nearest ("because you played X"), or :data:`POPULAR` without one. The vectors are
        gathered once for the whole batch.
        """
        past = np.flatnonzero((histories.positions >= 0) & (histories.weights > 0))
        past_edges = np.searchsorted(past, histories.bounds).tolist()
        past_vecs = self.vectors[histories.positions[past]]
        flat = list(chain.from_iterable(recommended))
        rec_vecs = self.vectors[np.array(flat, dtype=np.int64)] if flat else self.vectors[:0]
        past_rows = past.tolist()
        rows, titles, cache = histories.rows, self.titles, {}
        out: list[list[str]] = []
        r0 = 0
        for user, recs in zip(users, recommended):
            r1 = r0 + len(recs)
            a, b = past_edges[user], past_edges[user + 1]
            if a == b or r0 == r1:
                out.append([POPULAR] * len(recs))
            else:
                reasons = []
                for j in (rec_vecs[r0:r1] @ past_vecs[a:b].T).argmax(axis=1).tolist():
                    row = past_rows[a + j]
                    reason = cache.get(row)
                    if reason is None:
                        h = rows[row]
                        reason = cache[row] = f"because you {VERBS.get(h[1], 'chose')} {titles.get(h[0], h[0])}"
                    reasons.append(reason)
                out.append(reasons)
            r0 = r1
        return out

    def similar_items(self, item_id: str, k: int, exclude: Sequence[str] = (),
                      allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The ``k`` items nearest to ``item_id`` (itself and ``exclude`` left out; with ``allowed``,
        only those positions). Raises ``KeyError`` if ``item_id`` is unknown."""
        position = self.positions[item_id]
        left_out = np.array([position, *(self.positions[i] for i in exclude if i in self.positions)], dtype=np.int64)
        found, scores = self.search_positions(self.vectors[position][None, :], k, [left_out], allowed)
        return [(self.item_ids[p], s) for p, s in zip(found[0], scores[0])]


def bootstrap_model(items: Sequence[Mapping[str, Any]], dim: int = 64, index_config: IndexConfig | None = None
                    ) -> ServingModel:
    """The ``content-v0`` version: content vectors for the catalogue, mean-of-history user vectors.

    ``index_config`` (default ``IndexConfig()``) builds its index, now or when the first items come.
    """
    model = ServingModel(
        model_version=BOOTSTRAP_VERSION,
        index_version=f"{BOOTSTRAP_VERSION}-{int(time.time())}",
        item_ids=[],
        vectors=np.zeros((0, dim), dtype=np.float32),
        index=None,
        content_encoder=HashedContentEncoder(dim=dim),
        index_config=index_config or IndexConfig(),
    )
    if items:
        model.add_items(items)
    return model


@dataclass(frozen=True)
class Serving:
    """What one batch or request is served from, read once: the served version and, while an
    experiment runs, each arm's (arm name -> model)."""

    default: ServingModel | None
    experiment: Experiment | None = None
    arms: Mapping[str, ServingModel] = field(default_factory=dict)

    def model_for(self, user_id: str) -> tuple[ServingModel | None, str | None]:
        """``user_id``'s model and arm (``None`` outside any experiment)."""
        if self.experiment is not None and self.experiment.running:
            arm = self.experiment.arm_of(user_id)
            model = self.arms.get(arm.name)
            if model is not None:
                return model, arm.name
        return self.default, None

    def models(self) -> list[ServingModel]:
        """Every distinct model served: the default version, then the arms' (none while empty)."""
        out: list[ServingModel] = []
        for model in (self.default, *self.arms.values()):
            if model is not None and all(model is not m for m in out):
                out.append(model)
        return out


class ModelHolder:
    """The version being served, and the arms' versions while an experiment runs. Reading
    :attr:`serving` (or :attr:`current`) once per batch or request is what guarantees a
    response never mixes two versions."""

    def __init__(self, model: ServingModel | None = None) -> None:
        self._serving = Serving(model)

    @property
    def current(self) -> ServingModel | None:
        return self._serving.default

    @property
    def serving(self) -> Serving:
        return self._serving

    @property
    def experiment(self) -> Experiment | None:
        return self._serving.experiment

    def swap(self, model: ServingModel) -> ServingModel | None:
        """Serve ``model`` from now on; returns the previous one (in-flight work keeps using it).
        A running experiment keeps its arms."""
        previous = self._serving.default
        self._serving = Serving(model, self._serving.experiment, self._serving.arms)
        log.info("serving model_version=%s index_version=%s items=%d", model.model_version,
                 model.index_version, model.n_items)
        return previous

    def start_experiment(self, experiment: Experiment, models: Mapping[str, ServingModel]) -> None:
        """Serve each arm of ``experiment`` from ``models[arm.version]`` (every version must be there)."""
        missing = [a.version for a in experiment.arms if a.version not in models]
        if missing:
            raise KeyError(f"experiment {experiment.name!r}: versions not loaded: {missing}")
        for arm in experiment.arms:
            if models[arm.version].model_version != arm.version:
                raise ValueError(f"arm {arm.name!r} names {arm.version}, the model given is "
                                 f"{models[arm.version].model_version}")
        self._serving = Serving(self._serving.default, experiment,
                                {a.name: models[a.version] for a in experiment.arms})
        log.info("experiment started name=%s arms=%s", experiment.name,
                 ",".join(f"{a.name}={a.version}:{a.share:g}" for a in experiment.arms))

    def stop_experiment(self) -> Experiment | None:
        """Serve every user from the default version again; returns the experiment stopped."""
        stopped = self._serving.experiment
        self._serving = Serving(self._serving.default)
        if stopped is not None:
            log.info("experiment stopped name=%s", stopped.name)
        return stopped


class _ArtifactContentEncoder:
    """New items' vectors from a trained item tower's content path."""

    def __init__(self, loaded: Any) -> None:
        self._loaded = loaded

    def encode_items(self, items: list[Mapping[str, Any]]) -> np.ndarray:
        texts = [HashedContentEncoder.item_text(it) for it in items]
        return np.asarray(self._loaded.cold_item_vectors(texts), dtype=np.float32)


def model_from_artifact(artifacts_dir: str | Path, version: str, *, key: bytes | None = None,
                        index_config: IndexConfig | None = None) -> ServingModel:
    """Load and verify ``version`` of ``artifacts_dir`` into a :class:`ServingModel`.

    :func:`models.artifacts.load_version` checks where the folder resolves, the
    manifest's version and signature (with ``key``) and every file. The index
    comes from the artifact's ``index/`` folder when present (its manifest's
    checksum taken from the artifact's manifest, its own files and faiss header
    verified, see :mod:`index.store`), else it is built from the exported item
    vectors with ``index_config`` (default ``IndexConfig()``). Before anything
    serves, the item ids, the vector rows and the index must agree: as many ids
    as rows, the index holding exactly the row numbers ``0..n-1`` at the vectors'
    dimension. Raises the artifact's or the index's error when anything does not verify.
    """
    from models.artifacts import ArtifactError, load_version

    loaded = load_version(artifacts_dir, version, key=key)
    loaded.model.freeze()  # served, never trained: history items looked up, not re-encoded per event
    path = loaded.path
    ids = list(loaded.items.ids)
    vectors = np.ascontiguousarray(loaded.item_embeddings, dtype=np.float32)
    config = index_config or IndexConfig()
    index_manifest = loaded.manifest["files"].get("index/manifest.json")
    if index_manifest is not None:
        index, manifest = load_index(path / "index", manifest_sha256=index_manifest["sha256"])
        index_version = manifest.index_version
    elif any(name.startswith("index/") for name in loaded.manifest["files"]):
        raise ArtifactError(f"{path}: index files listed without index/manifest.json", "size_mismatch")
    else:
        index = build_index(vectors, np.arange(len(ids), dtype=np.int64), config)
        index_version = f"{loaded.manifest['version']}-built"
    if len(ids) != vectors.shape[0] or len(index) != len(ids) or index.dim != vectors.shape[1] or not np.array_equal(
            np.sort(index.ids()), np.arange(len(ids), dtype=np.int64)):
        raise ArtifactError(f"{path}: {len(ids)} item ids, vectors {vectors.shape}, index of {len(index)} "
                            f"at dim={index.dim}: they must agree (index ids 0..n-1)", "size_mismatch")

    trained_items = len(ids)  # the towers' id table; items added later sit at positions past it

    def encode_users(positions: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
        # The towers learn from positives (skips only exclude items); one batched forward
        # pass for the whole micro-batch. Items published after training have no id in the
        # towers: left out of their input (still excluded from what is recommended).
        histories = [p[(w > 0) & (p < trained_items)] for p, w in zip(positions, weights)]
        out = np.full((len(histories), vectors.shape[1]), np.nan, dtype=np.float32)
        rows = [r for r, h in enumerate(histories) if len(h)]
        if rows:
            out[rows] = loaded.model.user_vectors([histories[r] for r in rows])
        return out

    return ServingModel(
        model_version=str(loaded.manifest["version"]),
        index_version=index_version,
        item_ids=ids,
        vectors=vectors,
        index=index,
        content_encoder=_ArtifactContentEncoder(loaded),
        user_encoder=encode_users,
        index_config=config,
    )
