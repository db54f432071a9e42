"""Choosing and building the right index for a catalogue."""

from __future__ import annotations

import numpy as np

from index._validate import as_vectors
from index.base import VectorIndex
from index.config import IndexConfig, ResolvedKind
from index.errors import ConfigError
from index.flat import FlatIndex
from index.hnsw import HnswIndex
from index.ivf import IvfFlatIndex, IvfPqIndex

__all__ = ["backend_for", "build_index"]

_BACKENDS: dict[str, type[VectorIndex]] = {
    "flat": FlatIndex,
    "hnsw": HnswIndex,
    "ivf": IvfFlatIndex,
    "ivfpq": IvfPqIndex,
}


def backend_for(kind: ResolvedKind | str) -> type[VectorIndex]:
    """The VectorIndex subclass implementing ``kind`` (not ``"auto"``)."""
    try:
        return _BACKENDS[kind]
    except KeyError:
        raise ConfigError(f"no index backend for kind={kind!r}; known: {sorted(_BACKENDS)}") from None


def build_index(vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
    """Build an index over float32 ``vectors`` (n, d) with unique int64 ``ids`` (n,).

    With ``config.kind == "auto"`` the type follows the catalogue size
    (:meth:`IndexConfig.resolve_kind`): exact up to ``auto_flat_max`` items, then
    HNSW, then IVF, then IVF-PQ from ``auto_ivfpq_min``.
    """
    config = config or IndexConfig()
    vectors = as_vectors(vectors, dim=None)
    return backend_for(config.resolve_kind(vectors.shape[0])).build(vectors, ids, config)
