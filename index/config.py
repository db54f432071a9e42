"""Typed, frozen settings of a vector index.

Defaults were tuned on the synthetic embedding-like data of ``bench/retrieval.py``
(see ``bench/README.md``) to reach recall@100 >= 0.95 against exact search;
uniform random vectors in 64 dimensions are much harder and need larger
``hnsw_ef_search`` / ``ivf_nprobe``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from index.errors import ConfigError

__all__ = ["DeviceChoice", "IndexConfig", "IndexKind", "ResolvedKind"]

IndexKind = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
ResolvedKind = Literal["flat", "hnsw", "ivf", "ivfpq"]
DeviceChoice = Literal["auto", "cpu", "gpu"]

_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
_DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """Every setting of an index; all have defaults.

    Attributes:
        kind: index type; ``"auto"`` picks by catalogue size (see :meth:`resolve_kind`).
        device: ``"auto"`` uses a GPU when faiss sees one, ``"gpu"`` asks for one
            (falls back to the CPU with a warning when absent), ``"cpu"`` never uses one.
        auto_flat_max: with ``kind="auto"``, catalogues up to this size use exact search.
        auto_hnsw_max: with ``kind="auto"``, larger catalogues up to this size use HNSW;
            above it IVF, whose adds and removes stay cheap at any size.
        auto_ivfpq_min: with ``kind="auto"``, catalogues from this size use IVF-PQ.
        hnsw_m: HNSW graph degree ``M`` (memory grows by about 8*M bytes per item).
        hnsw_ef_construction: HNSW candidate list size while inserting.
        hnsw_ef_search: HNSW candidate list size while searching (raised to ``k`` when smaller);
            ``None`` sizes it to each search, ``max(64, 2*k)`` (see :meth:`hnsw_ef`).
        hnsw_compact_ratio: rebuild the HNSW graph once this share of its nodes are
            tombstones (removed or replaced items); ``1.0`` disables automatic compaction.
        ivf_nlist: number of IVF lists; ``None`` picks a power of two near ``4*sqrt(n)``,
            kept at or below ``n / ivf_train_per_list``.
        ivf_nprobe: lists visited per query.
        ivf_train_per_list: training points per list for the coarse k-means (faiss warns under 39).
        pq_m: PQ sub-quantisers (bytes per item at 8 bits); ``None`` means one per
            dimension, 4x smaller than float32. Must divide the dimension.
        pq_nbits: bits per PQ code.
        pq_train_size: training points for the PQ codebooks.
        pq_niter: k-means iterations for the PQ codebooks.
        exclude_overfetch_max: per-query exclusion sets up to this size are handled
            by fetching ``k + |exclude|`` and filtering; larger sets use a faiss id
            selector for that query (exact, but one query at a time).
        seed: seed of training samples and k-means.
    """

    kind: IndexKind = "auto"
    device: DeviceChoice = "auto"
    auto_flat_max: int = 50_000
    auto_hnsw_max: int = 250_000
    auto_ivfpq_min: int = 10_000_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 128
    hnsw_ef_search: int | None = None
    hnsw_compact_ratio: float = 0.25
    ivf_nlist: int | None = None
    ivf_nprobe: int = 48
    ivf_train_per_list: int = 50
    pq_m: int | None = None
    pq_nbits: int = 8
    pq_train_size: int = 10_000
    pq_niter: int = 10
    exclude_overfetch_max: int = 1_024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"kind={self.kind!r} is not one of {_KINDS}")
        if self.device not in _DEVICES:
            raise ConfigError(f"device={self.device!r} is not one of {_DEVICES}")
        positive = (
            "hnsw_m", "hnsw_ef_construction", "ivf_nprobe",
            "ivf_train_per_list", "pq_nbits", "pq_train_size", "pq_niter",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive int")
        for name in ("auto_flat_max", "auto_hnsw_max", "auto_ivfpq_min", "exclude_overfetch_max", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r} must be a non-negative int")
        for name in ("ivf_nlist", "pq_m", "hnsw_ef_search"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r} must be None or a positive int")
        if not 0.0 < self.hnsw_compact_ratio <= 1.0:
            raise ConfigError(f"hnsw_compact_ratio={self.hnsw_compact_ratio!r} must be in (0, 1]")
        if self.pq_nbits > 16:
            raise ConfigError(f"pq_nbits={self.pq_nbits} must be at most 16")

    def hnsw_ef(self, k: int) -> int:
        """efSearch for a search of ``k`` results: the setting raised to ``k``, else ``max(64, 2*k)``.

        One fixed value cannot suit every ``k``: 128 held recall@100 at 0.95 in
        ``bench/retrieval.py``, but the worker asks for k=10, where 64 gave recall@10 0.981
        against 0.998 at 0.61x the search time (100,000 items, bench/README.md). A search that
        over-fetches to drop excluded ids sizes it to the results asked for, raised to the fetch.
        """
        if self.hnsw_ef_search is not None:
            return max(self.hnsw_ef_search, k)
        return max(64, 2 * k)

    def resolve_kind(self, n: int) -> ResolvedKind:
        """The index type used for a catalogue of ``n`` items."""
        if self.kind != "auto":
            return self.kind
        if n <= self.auto_flat_max:
            return "flat"
        if n <= self.auto_hnsw_max:
            return "hnsw"
        if n < self.auto_ivfpq_min:
            return "ivf"
        return "ivfpq"

    def resolve_nlist(self, n: int) -> int:
        """Number of IVF lists for ``n`` training candidates (at least 1)."""
        if self.ivf_nlist is not None:
            return self.ivf_nlist
        target = 4.0 * math.sqrt(max(n, 1))
        nlist = 2 ** max(0, round(math.log2(target)))
        while nlist > 1 and nlist * self.ivf_train_per_list > n:
            nlist //= 2
        return nlist

    def resolve_pq_m(self, dim: int) -> int:
        """Number of PQ sub-quantisers for dimension ``dim``; raises ConfigError if it does not divide ``dim``."""
        m = dim if self.pq_m is None else self.pq_m
        if dim % m:
            raise ConfigError(f"pq_m={m} must divide the dimension {dim}")
        return m

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown IndexConfig fields: {unknown}")
        return cls(**data)
