"""The contract every index backend implements, and the logic they share.

Scores are inner products (cosine similarity when the vectors are L2-normalised).
Result sentinels: where fewer than ``k`` results exist, rows are padded with
id ``-1`` and score ``-inf``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Literal

import faiss
import numpy as np

from index import gpu
from index._idset import IdRegistry
from index._rwlock import RWLock
from index._validate import as_ids, as_k, as_vectors
from index.config import IndexConfig, ResolvedKind
from index.errors import InvalidVectors, UnknownIds, VectorIndexError

__all__ = ["NO_ID", "NO_SCORE", "VectorIndex"]

log = logging.getLogger(__name__)

NO_ID = -1
"""Id of a missing result."""
NO_SCORE = float("-inf")
"""Score of a missing result."""

Device = Literal["cpu", "gpu"]


class VectorIndex(ABC):
    """An inner-product index over float32 vectors keyed by non-negative int64 ids.

    Thread-safe: searches run concurrently; ``add``/``remove`` wait for them and
    block new ones while they run. Build with :meth:`build` (or
    :func:`index.factory.build_index`), not the constructor.
    """

    kind: ClassVar[ResolvedKind]

    def __init__(self, dim: int, config: IndexConfig, device: Device) -> None:
        self._dim = dim
        self._config = config
        self._device: Device = device
        self._registry = IdRegistry()
        self._lock = RWLock()
        self._generation = 0
        self._built_at = time.time()
        self._replica: gpu.GpuReplica | None = None
        self._replica_stale = True
        self._replica_lock = threading.Lock()
        self._index: Any = None  # the CPU master faiss index, set by _build/_restore

    # ----------------------------------------------------------------- build
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
        """Build from float32 ``vectors`` of shape (n, d) and unique int64 ``ids`` of shape (n,).

        Raises InvalidVectors (or its subclasses DimensionMismatch, DuplicateIds) on bad input.
        """
        config = config or IndexConfig()
        vectors = as_vectors(vectors, dim=None)
        ids = as_ids(ids, n=vectors.shape[0])
        if not ids.size:
            raise InvalidVectors("cannot build an index from zero vectors")
        self = cls(vectors.shape[1], config, gpu.resolve_device(config.device))
        started = time.perf_counter()
        slots = self._build(vectors, ids)
        self._registry = IdRegistry(ids, slots)
        self._built_at = time.time()
        log.info(
            "index built kind=%s n=%d dim=%d device=%s factory=%s seconds=%.3f",
            self.kind, ids.size, self._dim, self._device, self.factory_string, time.perf_counter() - started,
        )  # fmt: skip
        return self

    # ------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Vector dimension ``d``."""
        return self._dim

    @property
    def config(self) -> IndexConfig:
        """The settings this index was built with."""
        return self._config

    @property
    def device(self) -> Device:
        """Where searches run when they can: ``"gpu"`` or ``"cpu"``."""
        return self._device

    @property
    def generation(self) -> int:
        """Number of mutations (add/remove/compact calls that changed something) since build or load."""
        return self._generation

    @property
    def built_at(self) -> float:
        """Unix time of the build."""
        return self._built_at

    def __len__(self) -> int:
        return len(self._registry)

    def ids(self) -> np.ndarray:
        """Every id held, sorted: int64 of shape (n,), a copy."""
        with self._lock.read():
            return self._registry.ids.copy()

    def contains(self, ids: Collection[int] | np.ndarray) -> np.ndarray:
        """Boolean mask of shape (len(ids),): which ids the index holds."""
        arr = _as_id_array(ids)
        with self._lock.read():
            return self._registry.contains(arr)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: kind, factory string, dim, count, metric, device, search parameters."""
        with self._lock.read():
            return {
                "kind": self.kind,
                "factory": self.factory_string,
                "dim": self._dim,
                "count": len(self._registry),
                "metric": "inner_product",
                "device": self._device,
                "gpu_replica": None if self._replica is None else self._replica.name,
                "search_params": self.search_params(),
                "generation": self._generation,
                **self._describe_extra(),
            }

    # ---------------------------------------------------------------- search
    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Collection[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items by inner product for each query.

        Args:
            queries: float32 of shape (m, d).
            k: results per query.
            exclude: ``None``, or one collection of ids per query that must never
                be returned for that query (e.g. items the user has already seen).

        Returns:
            ``(scores, ids)``: float32 (m, k) in decreasing order and int64 (m, k).
            Rows with fewer than ``k`` results are padded with id -1 and score -inf.

        Excluded ids are filtered out after fetching ``k + |exclude|`` candidates,
        so each query still gets ``k`` results when the index has them; sets larger
        than ``config.exclude_overfetch_max`` (HNSW: than what fits in the efSearch the
        search uses anyway) use a faiss id selector instead, one query at a time.
        """
        q, k, scores, found = self._prepare(queries, k, exclude)
        m = q.shape[0]
        if not m:
            return scores, found
        with self._lock.read():
            if exclude is None:
                d, i = self._search_any(q, k, None)
                _place(scores, found, np.arange(m), d, i, k)
            else:
                self._search_excluding(q, k, [_as_id_array(e) for e in exclude], scores, found)
        return scores, found

    def _prepare(self, queries: np.ndarray, k: int, exclude: Sequence[Collection[int]] | None
                 ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """Validated queries and ``k``, and the padded (scores, ids) outputs a search fills."""
        q = as_vectors(queries, dim=self._dim, name="queries")
        k = as_k(k)
        m = q.shape[0]
        if exclude is not None and len(exclude) != m:
            raise InvalidVectors(f"exclude has {len(exclude)} entries for {m} queries")
        return q, k, np.full((m, k), NO_SCORE, dtype=np.float32), np.full((m, k), NO_ID, dtype=np.int64)

    def search_among(self, queries: np.ndarray, k: int, allowed: Collection[int] | np.ndarray,
                     exclude: Sequence[Collection[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query among the ``allowed`` ids only (a filter, e.g. one category), never
        an id of the row's ``exclude``: a faiss id selector inside the search, one query at a time.

        Same return as :meth:`search`; a row has ``k`` results whenever ``k`` allowed ids are
        held. Approximate kinds can miss some when the allowed set is a sliver of the index
        (HNSW walks a graph of mostly rejected nodes, IVF probes lists that hold none): such a
        row is searched again exhaustively over the allowed ids.
        """
        q, k, scores, found = self._prepare(queries, k, exclude)
        m = q.shape[0]
        allowed_ids = np.unique(_as_id_array(allowed))
        with self._lock.read():
            allowed_ids = allowed_ids[self._registry.contains(allowed_ids)] if allowed_ids.size else allowed_ids
            for row in range(m):
                chosen = allowed_ids
                if exclude is not None and len(exclude[row]):
                    chosen = np.setdiff1d(allowed_ids, _as_id_array(exclude[row]), assume_unique=False)
                if not chosen.size:
                    continue
                want = min(k, int(chosen.size))
                d, i = self._search_selected(q[row : row + 1], want, chosen)
                if np.count_nonzero(i >= 0) < want:  # the approximate walk missed some: search exhaustively
                    d, i = self._search_selected_exhaustive(q[row : row + 1], want, chosen)
                got = i.shape[1]  # fewer columns than k when fewer are allowed: the rest stays padding
                scores[row, :got], found[row, :got] = d[0], i[0]
                _place(scores, found, np.array([row]), scores[row : row + 1].copy(), found[row : row + 1].copy(), k)
        return scores, found

    def _search_selected(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CPU search that returns only ``ids`` (sorted, held): external ids, like :meth:`_search_cpu`."""
        raise NotImplementedError

    def _search_selected_exhaustive(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_search_selected` that finds every allowed id (exact kinds: the same search)."""
        return self._search_selected(q, k, ids)

    def _search_excluding(
        self, q: np.ndarray, k: int, excluded: list[np.ndarray], scores: np.ndarray, found: np.ndarray
    ) -> None:
        # Only ids the index holds can displace results, so only they cost over-fetch.
        # One registry lookup for the whole batch (not one per query).
        sizes = np.fromiter((e.size for e in excluded), dtype=np.int64, count=len(excluded))
        flat = np.concatenate(excluded) if sizes.sum() else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(excluded)), sizes)
        keep = self._registry.contains(flat) if flat.size else np.zeros(0, bool)
        flat, owner = flat[keep], owner[keep]
        sizes = np.bincount(owner, minlength=len(excluded)).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        cap = self._overfetch_cap(k)
        for row in np.flatnonzero(sizes > cap):
            d, i = self._search_any(q[row : row + 1], k, flat[starts[row] : starts[row + 1]])
            _place(scores, found, np.array([row]), d, i, k)
        small = np.flatnonzero(sizes <= cap)
        extra = self._overfetch_buckets(sizes[small], cap)
        for fetch_extra in np.unique(extra):
            rows = small[extra == fetch_extra]
            d, i = self._search_any(q[rows], k + int(fetch_extra), None, wanted=k)
            if fetch_extra:
                i[_pairs_in(rows, i, owner, flat)] = NO_ID
            _place(scores, found, rows, d, i, k)

    def outgrown(self, n: int) -> bool:
        """Whether a catalogue of ``n`` items has outgrown how this index was built (IVF: lists
        sized for far fewer items), so a rebuild at ``n`` would search much faster."""
        return False

    def _overfetch_cap(self, k: int) -> int:
        """The largest exclusion set a search of ``k`` handles by over-fetching; a larger one is
        searched alone with a faiss id selector."""
        return self._config.exclude_overfetch_max

    def _overfetch_buckets(self, sizes: np.ndarray, cap: int) -> np.ndarray:
        """How many extra results each query of exclusion set ``sizes`` (all <= ``cap``) fetches:
        the next power of two of its size, so one query with a long history does not make the
        whole batch fetch deep (at least ``sizes``, at most ``cap``)."""
        pow2 = 2 ** np.ceil(np.log2(np.maximum(sizes, 1)))
        return np.where(sizes > 0, np.minimum(pow2, cap), 0).astype(np.int64)

    def _search_any(self, q: np.ndarray, k: int, exclude: np.ndarray | None,
                    wanted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Search on the GPU replica when usable, else on the CPU master. ``wanted``: how many of the
        ``k`` fetched are asked for (the rest is over-fetch for exclusions; see HNSW's efSearch)."""
        if exclude is None and self._device == "gpu":
            replica = self._current_replica()
            if replica is not None and k <= replica.max_k:
                return replica.search(q, k)
        return self._search_cpu(q, k, exclude, wanted)

    def warm_up(self) -> None:
        """Build the GPU replica now (no-op on the CPU) so the first search does not pay for it."""
        if self._device == "gpu":
            with self._lock.read():
                self._current_replica()

    def _current_replica(self) -> gpu.GpuReplica | None:
        with self._replica_lock:
            if self._replica_stale:
                self._replica = self._make_replica()
                self._replica_stale = False
                if self._replica is None:
                    # Do not retry a failing GPU on every search.
                    self._device = "cpu"
            return self._replica

    # -------------------------------------------------------------- mutation
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> int:
        """Insert float32 (n, d) ``vectors`` under unique int64 (n,) ``ids``; no rebuild.

        An id the index already holds has its vector replaced. Returns how many were replaced.
        """
        v = as_vectors(vectors, dim=self._dim)
        i = as_ids(ids, n=v.shape[0])
        if not i.size:
            return 0
        with self._lock.write():
            existing = i[self._registry.contains(i)]
            if existing.size:
                self._remove_items(existing)
                self._registry.delete(existing)
            slots = self._add_items(v, i)
            self._registry.insert(i, slots)
            self._after_mutation()
        log.debug("index add kind=%s added=%d replaced=%d count=%d", self.kind, i.size, existing.size, len(self))
        return int(existing.size)

    def remove(self, ids: Collection[int] | np.ndarray, *, strict: bool = False) -> np.ndarray:
        """Remove ``ids``; no rebuild.

        Returns the ids the index did not hold (int64, shape (u,)), which are also
        logged; with ``strict=True`` they raise UnknownIds and nothing is removed.
        """
        arr = as_ids(_as_id_array(ids), n=None)
        with self._lock.write():
            known = self._registry.contains(arr)
            unknown = arr[~known]
            if unknown.size and strict:
                raise UnknownIds(f"{unknown.size} ids are not in the index, e.g. {unknown[:5].tolist()}", unknown)
            if known.any():
                self._remove_items(arr[known])
                self._registry.delete(arr[known])
                self._after_mutation()
        if unknown.size:
            log.warning("index remove got unknown ids kind=%s unknown=%d removed=%d", self.kind, unknown.size, known.sum())
        return unknown

    def compact(self) -> int:
        """Reclaim space left by removals; returns how many slots were freed (0 if none)."""
        with self._lock.write():
            freed = self._compact()
            if freed:
                self._after_mutation()
        return freed

    def _after_mutation(self) -> None:
        self._generation += 1
        with self._replica_lock:
            self._replica_stale = True
        self._maybe_compact()

    # --------------------------------------------------------- store support
    def export(self) -> tuple[Any, dict[str, np.ndarray]]:
        """A consistent CPU copy for saving: (faiss index serialised to uint8, extra arrays)."""
        with self._lock.read():
            return faiss.serialize_index(self._cpu_index()), self._extra_arrays()

    @classmethod
    def restore(cls, faiss_index: Any, extras: dict[str, np.ndarray], config: IndexConfig) -> VectorIndex:
        """Rebuild an index object from what :meth:`export` produced."""
        self = cls(int(faiss_index.d), config, gpu.resolve_device(config.device))
        ids, slots = self._restore(faiss_index, extras)
        self._registry = IdRegistry(ids, slots)
        return self

    # ------------------------------------------------------- backend hooks
    @property
    @abstractmethod
    def factory_string(self) -> str:
        """faiss factory-style description, e.g. ``"IVF1024,Flat"``."""

    @abstractmethod
    def search_params(self) -> dict[str, int]:
        """Search-time parameters in effect, e.g. ``{"nprobe": 48}``."""

    @abstractmethod
    def _build(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
        """Build the master from validated input; return the registry slots (or None)."""

    @abstractmethod
    def _search_cpu(self, q: np.ndarray, k: int, exclude: np.ndarray | None,
                    wanted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Search the CPU master: (scores (m, k), external ids (m, k) with -1 padding)."""

    # The defaults below serve faiss indexes that store external ids themselves
    # (IndexIDMap2 over a flat index, IVF lists) in ``self._index``.
    def _add_items(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
        """Insert ids not yet held; return their registry slots (or None)."""
        self._index.add_with_ids(vectors, ids)
        return None

    def _remove_items(self, ids: np.ndarray) -> None:
        """Remove ids that are held."""
        removed = self._index.remove_ids(ids)
        if removed != ids.size:
            raise VectorIndexError(f"faiss removed {removed} vectors, expected {ids.size}: id map out of sync")

    def _cpu_index(self) -> Any:
        """The CPU faiss index that is saved."""
        return self._index

    @abstractmethod
    def _restore(self, faiss_index: Any, extras: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Adopt a loaded faiss index; return (live ids, their slots or None)."""

    @abstractmethod
    def _make_replica(self) -> gpu.GpuReplica | None:
        """Build a GPU replica of the current master, or None."""

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def _maybe_compact(self) -> None:
        return None

    def _compact(self) -> int:
        return 0


def _pairs_in(rows: np.ndarray, ids: np.ndarray, owner: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Mask over ``ids`` (one row per query ``rows[r]``): is (rows[r], id) among (owner, excluded)?

    One sorted lookup for the whole bucket; ids and query rows are packed into
    one int64 key when they fit, else the rows are checked one by one.
    """
    if not excluded.size:
        return np.zeros(ids.shape, bool)
    lo = min(int(ids.min()), int(excluded.min()))
    span = max(int(ids.max()), int(excluded.max())) - lo + 1
    if span * (int(max(rows.max(), owner.max())) + 1) < 2**62:
        wanted = np.unique(owner * span + (excluded - lo))
        keys = rows[:, None] * span + (ids - lo)
        pos = np.minimum(np.searchsorted(wanted, keys), wanted.size - 1)
        return wanted[pos] == keys
    mask = np.zeros(ids.shape, bool)
    for r, row in enumerate(rows):
        mask[r] = np.isin(ids[r], excluded[owner == row])
    return mask


def _as_id_array(ids: Collection[int] | np.ndarray) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        if ids.size and ids.dtype.kind not in "iu":
            raise InvalidVectors(f"ids must be integers, got dtype={ids.dtype}")
        return ids.astype(np.int64, copy=False).ravel()
    try:
        return np.fromiter(ids, dtype=np.int64, count=len(ids))
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidVectors(f"ids must be a collection of ints: {e}") from e


def _place(
    scores: np.ndarray, found: np.ndarray, rows: np.ndarray, d: np.ndarray, i: np.ndarray, k: int
) -> None:
    """Write each row's first ``k`` valid results (id != -1), in order, into the outputs."""
    valid = i >= 0
    if valid[:, :k].all():
        found[rows] = i[:, :k]
        scores[rows] = d[:, :k]
        return
    # Stable sort moves valid entries to the front of each row, keeping score order.
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    i = np.take_along_axis(i, order, axis=1)
    d = np.take_along_axis(d, order, axis=1)
    ok = i >= 0
    width = i.shape[1]
    found[rows, :width] = np.where(ok, i, NO_ID)
    scores[rows, :width] = np.where(ok, d, NO_SCORE)
