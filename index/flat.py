"""Exact inner-product search: ``IndexIDMap2(IndexFlatIP)``.

The baseline every approximate index is measured against; right for catalogues
up to tens of thousands of items. Removal is real (vectors are compacted, O(n)).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from index import gpu
from index.base import VectorIndex
from index.errors import ManifestError

__all__ = ["FlatIndex"]


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

    def _search_cpu(self, q: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        # IndexIDMap2 translates a selector on external ids to its positions.
        return self._index.search(q, k, params=exclude_params(exclude))

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
