"""Inverted-file search: ``IndexIVFFlat`` and ``IndexIVFPQ`` over a trained k-means quantiser.

External ids are stored in the inverted lists themselves, so adds and removes
are native (a removal scans the lists once, O(n)). The quantiser is trained
once, at build; items added later are assigned to the existing lists, so a
catalogue that drifts far from the training data should be rebuilt.

IVF-PQ keeps ``pq_m`` bytes per item (8-bit codes) instead of ``4*d``: the
option for catalogues too large for memory as float32. Its default (one code
per dimension) keeps recall@100 >= 0.95; fewer sub-quantisers save more memory
and lose recall (see ``bench/README.md``).
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np

from index import gpu
from index.base import VectorIndex
from index.errors import InvalidVectors, ManifestError
from index.flat import allow_params, exclude_params

__all__ = ["IvfFlatIndex", "IvfPqIndex"]

log = logging.getLogger(__name__)

# faiss's k-means warns below this many training points per centroid.
_FAISS_MIN_POINTS = 39


class IvfFlatIndex(VectorIndex):
    """IVF with full float32 vectors in the lists. See :class:`~index.base.VectorIndex`."""

    kind = "ivf"

    def _new_index(self, nlist: int) -> Any:
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(self._dim), self._dim, nlist, faiss.METRIC_INNER_PRODUCT)

    def _train(self, index: Any, vectors: np.ndarray, rng: np.random.Generator) -> None:
        index.train(_sample(vectors, index.nlist * self._config.ivf_train_per_list, rng))

    def _build(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        n = vectors.shape[0]
        index = self._new_index(self._config.resolve_nlist(n))
        index.cp.seed = self._config.seed
        index.nprobe = self._config.ivf_nprobe  # copied along to GPU clones
        rng = np.random.default_rng(self._config.seed)
        if self._device == "gpu":
            train = _sample(vectors, index.nlist * self._config.ivf_train_per_list, rng)
            built = gpu.build_ivf_on_gpu(index, train, vectors, ids)
            if built is not None:
                self._index, replica = built
                self._index.nprobe = self._config.ivf_nprobe
                self._replica, self._replica_stale = replica, False
                return
            self._device = "cpu"
        self._train(index, vectors, rng)
        index.add_with_ids(vectors, ids)
        self._index = index

    @property
    def factory_string(self) -> str:
        return f"IVF{self._index.nlist},Flat"

    def search_params(self) -> dict[str, int]:
        return {"nprobe": self._config.ivf_nprobe}

    def outgrown(self, n: int) -> bool:
        # Adds go into the existing lists: a version's index of 10^5 items taking a catalogue of
        # 10^6 keeps 1,024 lists of ~1,000 items, and every query scans nprobe of them (4x the
        # ~250 that 4,096 lists for 10^6 hold).
        return self._config.resolve_nlist(n) > self._index.nlist

    def _search_cpu(self, q: np.ndarray, k: int, exclude: np.ndarray | None,
                    wanted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF()
        params.nprobe = self._config.ivf_nprobe
        return self._index.search(q, k, params=exclude_params(exclude, params))

    def _search_selected(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF()
        params.nprobe = self._config.ivf_nprobe
        return self._index.search(q, k, params=allow_params(ids, params))

    def _search_selected_exhaustive(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF()
        params.nprobe = self._index.nlist  # every list: nothing allowed is left unvisited
        return self._index.search(q, k, params=allow_params(ids, params))

    def _restore(self, faiss_index: Any, extras: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        index = faiss_index  # read_index already returns the concrete type, and owns it
        expected = faiss.IndexIVFPQ if self.kind == "ivfpq" else faiss.IndexIVFFlat
        if type(index) is not expected:
            raise ManifestError(f"{self.kind} index file holds {type(index).__name__}, expected {expected.__name__}")
        index.nprobe = self._config.ivf_nprobe
        self._index = index
        invlists = index.invlists
        ids = [
            faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
            for lst in range(index.nlist)
            if invlists.list_size(lst)
        ]
        return (np.concatenate(ids).astype(np.int64) if ids else np.empty(0, np.int64)), None

    def _make_replica(self) -> gpu.GpuReplica | None:
        return gpu.ivf_replica(self._index)


class IvfPqIndex(IvfFlatIndex):
    """IVF with product-quantised residuals in the lists. See :class:`~index.base.VectorIndex`."""

    kind = "ivfpq"

    def _new_index(self, nlist: int) -> Any:
        m = self._config.resolve_pq_m(self._dim)
        index = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(self._dim), self._dim, nlist, m, self._config.pq_nbits, faiss.METRIC_INNER_PRODUCT
        )
        index.pq.cp.niter = self._config.pq_niter
        index.pq.cp.seed = self._config.seed
        return index

    def _train(self, index: Any, vectors: np.ndarray, rng: np.random.Generator) -> None:
        need = 2**self._config.pq_nbits
        if vectors.shape[0] < need:
            raise InvalidVectors(f"ivfpq with pq_nbits={self._config.pq_nbits} needs at least {need} vectors to train")
        if vectors.shape[0] < _FAISS_MIN_POINTS * need:
            # One log line here instead of one faiss stderr warning per sub-quantiser.
            log.warning(
                "ivfpq codebooks trained on few points n=%d wanted=%d pq_nbits=%d",
                vectors.shape[0], _FAISS_MIN_POINTS * need, self._config.pq_nbits,
            )  # fmt: skip
            index.pq.cp.min_points_per_centroid = 1
        # Train the coarse quantiser on its own sample first: faiss then skips it in
        # index.train(), and the PQ codebooks train on a smaller sample (their
        # k-means is the slow part of the build).
        coarse = faiss.Clustering(self._dim, index.nlist, index.cp)
        coarse.train(_sample(vectors, index.nlist * self._config.ivf_train_per_list, rng), index.quantizer)
        index.train(_sample(vectors, self._config.pq_train_size, rng))

    @property
    def factory_string(self) -> str:
        return f"IVF{self._index.nlist},PQ{self._index.pq.M}x{self._index.pq.nbits}"


def _sample(vectors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= vectors.shape[0]:
        return vectors
    return vectors[np.sort(rng.choice(vectors.shape[0], size, replace=False))]
