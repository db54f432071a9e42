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
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from index import IndexConfig, build_index, load_index
from models.bootstrap import BOOTSTRAP_VERSION, HashedContentEncoder
from stream.state import recency_weighted_mean

log = logging.getLogger(__name__)

VERBS = {"play": "played", "click": "clicked", "like": "liked", "purchase": "bought", "skip": "skipped"}


class ContentEncoder(Protocol):
    """Vectors for catalogue records from their content (title, text, tags)."""

    def encode_items(self, items: list[Mapping[str, Any]]) -> np.ndarray: ...


# (histories of item positions, oldest first; their weights) -> float32 (n, d), NaN rows for "no vector"
UserEncoder = Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Recommendation:
    """One recommended item with its score and the history item it is nearest to."""

    item_id: str
    score: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": round(self.score, 6), "reason": self.reason}


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

    def __post_init__(self) -> None:
        self.positions = {item: i for i, item in enumerate(self.item_ids)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.positions

    # --- catalogue ----------------------------------------------------------------
    def add_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Add or refresh catalogue records (cold start); returns how many items were new.

        New items get vectors from their content and enter the index at once;
        known items only refresh their title.
        """
        fresh = [it for it in items if str(it["item_id"]) not in self.positions]
        for it in items:
            if it.get("title"):
                self.titles[str(it["item_id"])] = str(it["title"])
        if not fresh:
            return 0
        vecs = np.ascontiguousarray(self.content_encoder.encode_items(list(fresh)), dtype=np.float32)
        start = len(self.item_ids)
        ids = np.arange(start, start + len(fresh), dtype=np.int64)
        if self.index is None:
            self.index = build_index(vecs, ids, IndexConfig())
        else:
            self.index.add(vecs, ids)
        self.vectors = np.vstack([self.vectors, vecs])
        for offset, it in enumerate(fresh):
            self.item_ids.append(str(it["item_id"]))
            self.positions[str(it["item_id"])] = start + offset
        return len(fresh)

    # --- users -------------------------------------------------------------------
    def user_vectors(self, histories: Sequence[Sequence[Sequence[Any]]]) -> list[np.ndarray | None]:
        """A vector per user from their history (``[item_id, type, ts, weight]`` rows, oldest first).

        Items unknown to this version are ignored; a user whose history gives no
        positive signal gets ``None`` (served trending items instead).
        """
        positions: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        for history in histories:
            rows = [(self.positions[h[0]], float(h[3])) for h in history if h[0] in self.positions]
            positions.append(np.array([r[0] for r in rows], dtype=np.int64))
            weights.append(np.array([r[1] for r in rows], dtype=np.float32))
        if self.user_encoder is not None:
            out = self.user_encoder(positions, weights)
            return [None if not np.isfinite(row).all() else row.astype(np.float32) for row in out]
        return [recency_weighted_mean(self.vectors[p], w) if len(p) else None for p, w in zip(positions, weights)]

    # --- retrieval ---------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[set[str]]
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item id, score) per query row, never an excluded item; best first."""
        if len(queries) == 0:
            return []
        if self.index is None:
            return [[] for _ in range(len(queries))]
        excluded = [{self.positions[i] for i in ex if i in self.positions} for ex in exclude]
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, exclude=excluded)
        return [
            [(self.item_ids[int(i)], float(s)) for s, i in zip(srow, irow) if i >= 0]
            for srow, irow in zip(scores, ids)
        ]

    def explain(self, recommended: list[tuple[str, float]], history: Sequence[Sequence[Any]]) -> list[Recommendation]:
        """Attach to each item the positive history item nearest to it ("because you played X")."""
        past = [h for h in history if h[0] in self.positions and float(h[3]) > 0]
        if not past or not recommended:
            return [Recommendation(i, s, "popular right now") for i, s in recommended]
        past_vecs = self.vectors[[self.positions[h[0]] for h in past]]
        rec_vecs = self.vectors[[self.positions[i] for i, _ in recommended]]
        nearest = np.argmax(rec_vecs @ past_vecs.T, axis=1)
        out = []
        for (item, score), j in zip(recommended, nearest):
            h = past[int(j)]
            out.append(Recommendation(item, score, f"because you {VERBS.get(h[1], 'chose')} "
                                                   f"{self.titles.get(h[0], h[0])}"))
        return out

    def similar_items(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` items nearest to ``item_id`` (itself excluded). Raises ``KeyError`` if unknown."""
        vec = self.vectors[self.positions[item_id]][None, :]
        return self.search(vec, k, [{item_id}])[0]


def bootstrap_model(items: Sequence[Mapping[str, Any]], dim: int = 64, index_config: IndexConfig | None = None
                    ) -> ServingModel:
    """The ``content-v0`` version: content vectors for the catalogue, mean-of-history user vectors."""
    encoder = HashedContentEncoder(dim=dim)
    ids = [str(it["item_id"]) for it in items]
    vectors = encoder.encode_items(list(items)) if items else np.zeros((0, dim), dtype=np.float32)
    index = (build_index(vectors, np.arange(len(ids), dtype=np.int64), index_config or IndexConfig())
             if ids else None)
    return ServingModel(
        model_version=BOOTSTRAP_VERSION,
        index_version=f"{BOOTSTRAP_VERSION}-{int(time.time())}",
        item_ids=ids,
        vectors=vectors,
        index=index,
        content_encoder=encoder,
        titles={str(it["item_id"]): str(it.get("title", "")) for it in items if it.get("title")},
    )


class ModelHolder:
    """The version being served. Reading :attr:`current` once per batch or request
    is what guarantees a response never mixes two versions."""

    def __init__(self, model: ServingModel | None = None) -> None:
        self._model = model

    @property
    def current(self) -> ServingModel | None:
        return self._model

    def swap(self, model: ServingModel) -> ServingModel | None:
        """Serve ``model`` from now on; returns the previous one (in-flight work keeps using it)."""
        previous, self._model = self._model, model
        log.info("serving model_version=%s index_version=%s items=%d", model.model_version,
                 model.index_version, model.n_items)
        return previous


class _ArtifactContentEncoder:
    """New items' vectors from a trained item tower's content path."""

    def __init__(self, loaded: Any) -> None:
        self._loaded = loaded

    def encode_items(self, items: list[Mapping[str, Any]]) -> np.ndarray:
        texts = [HashedContentEncoder.item_text(it) for it in items]
        return np.asarray(self._loaded.cold_item_vectors(texts), dtype=np.float32)


def model_from_artifact(path: str | Path, index_config: IndexConfig | None = None) -> ServingModel:
    """Load a trained version (checksums verified) into a :class:`ServingModel`.

    The index comes from the artifact's ``index/`` folder when present (its own
    checksum verified too), else it is built from the exported item vectors.
    Raises the artifact's or the index's error when anything does not verify.
    """
    from models.artifacts import load_artifact

    path = Path(path)
    loaded = load_artifact(path)
    ids = list(loaded.items.ids)
    vectors = np.ascontiguousarray(loaded.item_embeddings, dtype=np.float32)
    if (path / "index").is_dir():
        index, manifest = load_index(path / "index")
        index_version = manifest.index_version
    else:
        index = build_index(vectors, np.arange(len(ids), dtype=np.int64), index_config or IndexConfig())
        index_version = f"{loaded.manifest['version']}-built"

    def encode_users(positions: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
        # The towers learn from positives (skips only exclude items); one batched
        # forward pass for the whole micro-batch.
        histories = [p[w > 0] for p, w in zip(positions, weights)]
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
    )
