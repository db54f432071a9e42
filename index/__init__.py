"""Vector indexes for retrieval: NumPy arrays and int64 ids in, scored ids out.

This package never imports torch, faust, kafka, ``stream`` or ``models``: the
trainer hands it float32 arrays, the worker loads what :mod:`index.store` saved.

Entry points: :func:`build_index` with an :class:`IndexConfig`, then
``search``/``add``/``remove`` on the :class:`VectorIndex` it returns,
:func:`save_index` / :func:`load_index`, and :class:`IndexHolder` to swap
versions under live traffic. GPU use is described in :mod:`index.gpu`.
"""

from index.base import NO_ID, NO_SCORE, VectorIndex
from index.config import IndexConfig
from index.errors import (
    ChecksumMismatch,
    ConfigError,
    DimensionMismatch,
    DuplicateIds,
    InvalidVectors,
    ManifestError,
    StoreError,
    UnknownIds,
    VectorIndexError,
)
from index.factory import backend_for, build_index
from index.flat import FlatIndex
from index.hnsw import HnswIndex
from index.holder import IndexHolder, IndexSnapshot, SearchResult
from index.ivf import IvfFlatIndex, IvfPqIndex
from index.store import Manifest, load_index, read_manifest, save_index

__all__ = [
    "NO_ID",
    "NO_SCORE",
    "ChecksumMismatch",
    "ConfigError",
    "DimensionMismatch",
    "DuplicateIds",
    "FlatIndex",
    "HnswIndex",
    "IndexConfig",
    "IndexHolder",
    "IndexSnapshot",
    "InvalidVectors",
    "IvfFlatIndex",
    "IvfPqIndex",
    "Manifest",
    "ManifestError",
    "SearchResult",
    "StoreError",
    "UnknownIds",
    "VectorIndex",
    "VectorIndexError",
    "backend_for",
    "build_index",
    "load_index",
    "read_manifest",
    "save_index",
]
