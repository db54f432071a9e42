"""Graph search: ``IndexIDMap(IndexHNSWFlat)`` with tombstones.

faiss cannot remove nodes from an HNSW graph. Removing (or replacing) an item
marks its node as a tombstone: searches skip it through an ``IDSelectorBitmap``
over live nodes, so it is never returned and does not cost recall, only some
search time. Once tombstones exceed ``config.hnsw_compact_ratio`` of the nodes
the graph is rebuilt from the live vectors (also on :meth:`VectorIndex.compact`).
That rebuild holds the index's write lock (minutes at a million items on two
cores), so for large catalogues build a new version in the background and swap
it in with :class:`~index.holder.IndexHolder` instead.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from index import gpu
from index._idset import IdRegistry, labels_at
from index.base import VectorIndex
from index.errors import ManifestError

__all__ = ["HnswIndex"]

_TOMBSTONES = "tombstones"


class HnswIndex(VectorIndex):
    """Approximate search on an HNSW graph. See :class:`~index.base.VectorIndex`.

    Registry slots are node positions in the graph; ``self._labels[pos]`` is the
    external id of node ``pos`` (also kept in the IndexIDMap for saving).
    """

    kind = "hnsw"

    def _new_graph(self) -> Any:
        graph = faiss.IndexHNSWFlat(self._dim, self._config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self._config.hnsw_ef_construction
        graph.hnsw.efSearch = self._config.hnsw_ef(10)  # searches pass their own (hnsw_ef(k))
        return faiss.IndexIDMap(graph)

    def _build(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        self._index = self._new_graph()
        self._index.add_with_ids(vectors, ids)
        self._adopt(ids.copy(), np.ones(ids.size, dtype=bool))
        return np.arange(ids.size, dtype=np.int64)

    def _adopt(self, labels: np.ndarray, alive: np.ndarray) -> None:
        self._graph = faiss.downcast_index(self._index.index)
        self._labels = labels
        self._alive = alive
        self._tombstones = int(alive.size - np.count_nonzero(alive))
        self._alive_bits: np.ndarray | None = None

    @property
    def factory_string(self) -> str:
        return f"IDMap,HNSW{self._config.hnsw_m},Flat"

    def search_params(self) -> dict[str, int]:
        return {"efSearch_k10": self._config.hnsw_ef(10), "efSearch_k100": self._config.hnsw_ef(100)}

    def _search_cpu(self, q: np.ndarray, k: int, exclude: np.ndarray | None,
                    wanted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()
        # Sized to the results asked for; over-fetch for exclusions only has to fit in the list.
        params.efSearch = max(self._config.hnsw_ef(wanted or k), k)
        # Selectors hold raw pointers to the ones they combine: kept alive on params.
        live = None
        if self._tombstones:
            if self._alive_bits is None:
                self._alive_bits = np.packbits(self._alive, bitorder="little")
            live = params._live = params.sel = faiss.IDSelectorBitmap(self._alive_bits)
        if exclude is not None and exclude.size:
            # A hash of the excluded nodes (O(|exclude|) to build, not a bitmap of the whole graph).
            params._excluded = faiss.IDSelectorBatch(self._registry.slots(exclude))
            params._not_excluded = params.sel = faiss.IDSelectorNot(params._excluded)
            if live is not None:
                params.sel = faiss.IDSelectorAnd(live, params._not_excluded)
        scores, pos = self._graph.search(q, k, params=params)
        return scores, labels_at(self._labels, pos)

    def _overfetch_cap(self, k: int) -> int:
        # Fetching up to the efSearch a plain search of k uses costs nothing more; beyond it every
        # extra result widens the walk, and a selector search of the query alone is cheaper.
        return min(self._config.exclude_overfetch_max, max(0, self._config.hnsw_ef(k) - k))

    def _search_selected(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.zeros(self._alive.size, dtype=bool)
        keep[self._registry.slots(ids)] = True
        keep &= self._alive
        params = faiss.SearchParametersHNSW()
        params.efSearch = self._config.hnsw_ef(k)
        bits = np.packbits(keep, bitorder="little")
        params.sel = faiss.IDSelectorBitmap(bits)
        scores, pos = self._graph.search(q, k, params=params)
        return scores, labels_at(self._labels, pos)

    def _search_selected_exhaustive(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slots = self._registry.slots(ids)
        vectors = faiss.downcast_index(self._graph.storage).reconstruct_batch(slots)
        scores = vectors @ q[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top][None, :].astype(np.float32), ids[top][None, :]

    def _add_items(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        start = self._labels.size
        self._index.add_with_ids(vectors, ids)
        self._labels = np.concatenate([self._labels, ids])
        self._alive = np.concatenate([self._alive, np.ones(ids.size, dtype=bool)])
        self._alive_bits = None
        return np.arange(start, start + ids.size, dtype=np.int64)

    def _remove_items(self, ids: np.ndarray) -> None:
        self._alive[self._registry.slots(ids)] = False
        self._tombstones += ids.size
        self._alive_bits = None

    def _maybe_compact(self) -> None:
        if self._tombstones and self._tombstones > self._config.hnsw_compact_ratio * self._labels.size:
            self._compact()

    def _compact(self) -> int:
        freed = self._tombstones
        if not freed:
            return 0
        live = np.flatnonzero(self._alive)
        vectors = faiss.downcast_index(self._graph.storage).reconstruct_n(0, self._labels.size)[live]
        ids = self._labels[live]
        self._index = self._new_graph()
        if ids.size:
            self._index.add_with_ids(vectors, ids)
        self._adopt(ids, np.ones(ids.size, dtype=bool))
        self._registry = IdRegistry(ids, np.arange(ids.size, dtype=np.int64))
        return freed

    def _describe_extra(self) -> dict[str, Any]:
        return {"tombstones": self._tombstones, "nodes": int(self._labels.size)}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {_TOMBSTONES: np.flatnonzero(~self._alive).astype(np.int64)}

    def _restore(self, faiss_index: Any, extras: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        index = faiss_index  # read_index already returns the concrete type, and owns it
        if not isinstance(index, faiss.IndexIDMap) or not isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
            raise ManifestError(f"hnsw index file holds {type(index).__name__}, expected IndexIDMap over IndexHNSWFlat")
        self._index = index
        labels = faiss.vector_to_array(index.id_map).astype(np.int64)
        alive = np.ones(labels.size, dtype=bool)
        dead = extras.get(_TOMBSTONES, np.empty(0, np.int64))
        if dead.size and (dead.min() < 0 or dead.max() >= labels.size):
            raise ManifestError(f"tombstones point outside the graph of {labels.size} nodes")
        alive[dead] = False
        self._adopt(labels, alive)
        live = np.flatnonzero(alive)
        return labels[live], live.astype(np.int64)

    def _make_replica(self) -> gpu.GpuReplica | None:
        live = np.flatnonzero(self._alive)
        vectors = faiss.downcast_index(self._graph.storage).reconstruct_n(0, self._labels.size)[live]
        return gpu.cagra_replica(vectors, self._labels[live], self._config)
