"""Exact inner-product search: ``IndexIDMap2(IndexFlatIP)``.

The baseline every approximate index is measured against; right for catalogues
up to tens of thousands of items. Removal is real (vectors are compacted, O(n)).

On the CPU, searches that exclude ids score the whole batch against the stored
vectors with one matrix product, mask each query's excluded items and select
the top ``k`` (``argpartition``): exact, with no over-fetch. Over-fetching
``k + |exclude|`` candidates through faiss' heap was some 10x slower for a
micro-batch of users with long histories (bench/stream_logic.py).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from index import gpu
from index.base import NO_ID, NO_SCORE, VectorIndex
from index.errors import ManifestError

__all__ = ["FlatIndex"]

# Scores computed at once by the dense exclusion path (float32: 16 MB).
_DENSE_CELLS = 4_000_000


def allow_params(ids: np.ndarray, params: Any = None) -> Any:
    """SearchParameters whose selector accepts only the external ids in ``ids``."""
    params = params if params is not None else faiss.SearchParameters()
    params.sel = faiss.IDSelectorBatch(ids)
    params._allowed = ids  # the selector copies them, but keep the array as long as the params
    return params


def exclude_params(exclude: np.ndarray | None, params: Any = None) -> Any:
    """SearchParameters whose selector rejects the external ids in ``exclude``.

    The selectors are attached to the returned object, which keeps them alive.
    """
    if exclude is None:
        return params
    params = params if params is not None else faiss.SearchParameters()
    inner = faiss.IDSelectorBatch(exclude)
    params.sel = faiss.IDSelectorNot(inner)
    params._exclude_inner = inner  # IDSelectorNot holds a raw pointer to it
    return params


class FlatIndex(VectorIndex):
    """Exact search. See :class:`~index.base.VectorIndex` for the contract."""

    kind = "flat"

    def _build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        self._index.add_with_ids(vectors, ids)

    @property
    def factory_string(self) -> str:
        return "IDMap2,Flat"

    def search_params(self) -> dict[str, int]:
        return {}

    def _search_cpu(self, q: np.ndarray, k: int, exclude: np.ndarray | None,
                    wanted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        # IndexIDMap2 translates a selector on external ids to its positions.
        return self._index.search(q, k, params=exclude_params(exclude))

    def _search_selected(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(q, k, params=allow_params(ids))

    def _search_excluding(
        self, q: np.ndarray, k: int, excluded: list[np.ndarray], scores: np.ndarray, found: np.ndarray
    ) -> None:
        if self._device == "gpu":  # the GPU replica over-fetches faster than this would copy
            super()._search_excluding(q, k, excluded, scores, found)
            return
        inner = faiss.downcast_index(self._index.index)
        n = inner.ntotal
        if n == 0:
            return
        # A view of the stored vectors (no copy): the caller holds the read lock, so no add
        # or remove moves them meanwhile.
        xb = faiss.rev_swig_ptr(inner.get_xb(), n * self._dim).reshape(n, self._dim)
        ids, sorted_ids, sorter = self._id_lookup()
        sizes = np.fromiter((e.size for e in excluded), dtype=np.int64, count=len(excluded))
        flat = np.concatenate(excluded) if sizes.sum() else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(excluded)), sizes)
        at = np.minimum(np.searchsorted(sorted_ids, flat), n - 1)
        held = sorted_ids[at] == flat  # ids the index does not hold exclude nothing
        owner, columns = owner[held], sorter[at[held]]
        kk = min(k, n)
        step = max(1, _DENSE_CELLS // n)
        for start in range(0, q.shape[0], step):
            stop = min(start + step, q.shape[0])
            block = q[start:stop] @ xb.T
            mine = (owner >= start) & (owner < stop)
            block[owner[mine] - start, columns[mine]] = NO_SCORE
            top = np.argpartition(block, n - kk, axis=1)[:, n - kk:] if kk < n else \
                np.broadcast_to(np.arange(n), block.shape)
            top_scores = np.take_along_axis(block, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # best first; ties by position
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            top_ids = ids[np.take_along_axis(top, order, axis=1)]
            missing = top_scores == NO_SCORE  # fewer than k items left after the exclusions
            scores[start:stop, :kk] = top_scores
            found[start:stop, :kk] = np.where(missing, NO_ID, top_ids)

    def _id_lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """External ids by storage position, and sorted with their positions; cached per generation."""
        key = (self._generation, id(self._index), self._index.ntotal)
        cached = getattr(self, "_ids_cache", None)
        if cached is None or cached[0] != key:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            sorter = np.argsort(ids, kind="stable")
            cached = (key, ids, ids[sorter], sorter)
            self._ids_cache = cached
        return cached[1], cached[2], cached[3]

    def _restore(self, faiss_index: Any, extras: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        index = faiss_index  # read_index already returns the concrete type, and owns it
        if not isinstance(index, faiss.IndexIDMap2) or not isinstance(faiss.downcast_index(index.index), faiss.IndexFlat):
            raise ManifestError(f"flat index file holds {type(index).__name__}, expected IndexIDMap2 over IndexFlatIP")
        self._index = index
        return faiss.vector_to_array(index.id_map).astype(np.int64), None

    def _make_replica(self) -> gpu.GpuReplica | None:
        inner = faiss.downcast_index(self._index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal)
        return gpu.flat_replica(vectors, faiss.vector_to_array(self._index.id_map).astype(np.int64))
