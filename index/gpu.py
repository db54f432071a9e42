"""GPU support: choosing the device, and GPU search replicas of a CPU index.

The CPU index is always the master: it takes adds and removes and is what
:mod:`index.store` saves. On a GPU, searches go to a replica rebuilt lazily
after the master changes (on the next search, not on every add):

* flat: ``faiss.GpuIndexFlatIP`` over the master's vectors;
* IVF / IVF-PQ: ``faiss.index_cpu_to_gpu`` of the master (and the k-means is
  trained on the GPU when the index is built there);
* HNSW: ``faiss.GpuIndexCagra`` (CAGRA graph) where the faiss build has cuVS;
  the HNSW graph itself is still built on the CPU, because faiss can only turn
  a CAGRA graph into an immutable CPU index (``IndexHNSWCagra.base_level_only``).

Any failure on the GPU path is logged and the CPU serves instead; nothing raises.

Installing: the ``gpu`` extra of ``pyproject.toml`` installs
``faiss-gpu-cu12-cuvs``, which ships native sm_90 code (H100, H200) and CAGRA;
``faiss-gpu-cu12`` lists only compute capability 7.0 to 8.9. Either replaces
``faiss-cpu`` (the same ``faiss`` module): uninstall that first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import faiss
import numpy as np

from index._idset import labels_at
from index.config import DeviceChoice, IndexConfig

__all__ = [
    "GpuReplica",
    "cagra_available",
    "gpu_available",
    "resolve_device",
]

log = logging.getLogger(__name__)

# faiss's GPU k-selection handles k up to 2048 (GPU_MAX_SELECTION_K); larger
# over-fetches are served by the CPU master.
GPU_MAX_K = 2048
# CAGRA's internal top-k list must hold k; past this cuVS gets slow.
CAGRA_MAX_K = 1024

_resources: Any = None
_resources_lock = threading.Lock()


def _has_gpu_symbols() -> bool:
    return all(hasattr(faiss, name) for name in ("StandardGpuResources", "index_cpu_to_gpu", "GpuIndexFlatIP"))


def gpu_available() -> bool:
    """True when this faiss build has GPU code and sees at least one GPU."""
    if not _has_gpu_symbols():
        return False
    try:
        return int(faiss.get_num_gpus()) > 0
    except Exception:  # a broken CUDA install must not take the service down
        log.warning("faiss.get_num_gpus failed; treating as no GPU", exc_info=True)
        return False


def cagra_available() -> bool:
    """True when this faiss build has CAGRA (``faiss-gpu-cu12-cuvs``)."""
    return hasattr(faiss, "GpuIndexCagra") and hasattr(faiss, "GpuIndexCagraConfig")


def resolve_device(requested: DeviceChoice) -> Literal["cpu", "gpu"]:
    """Map a configured device to the one used; logs when a GPU is wanted but absent."""
    if requested == "cpu":
        return "cpu"
    if gpu_available():
        return "gpu"
    reason = "faiss build has no GPU support" if not _has_gpu_symbols() else "faiss sees no GPU"
    if requested == "gpu":
        log.warning("gpu requested but unavailable, using cpu: reason=%r", reason)
    else:
        log.info("no gpu, using cpu: reason=%r", reason)
    return "cpu"


def _gpu_resources() -> Any:
    global _resources
    with _resources_lock:
        if _resources is None:
            _resources = faiss.StandardGpuResources()
        return _resources


def _cloner_options() -> Any:
    co = faiss.GpuClonerOptions()
    # IVF-PQ with many sub-quantisers only fits shared memory with float16 lookup tables.
    co.useFloat16 = True
    return co


class GpuReplica:
    """A GPU index answering searches for a CPU master.

    ``labels`` maps the GPU index's positions to external ids (flat, CAGRA);
    ``None`` when the GPU index stores external ids itself (IVF).
    """

    def __init__(
        self,
        index: Any,
        *,
        labels: np.ndarray | None,
        max_k: int,
        name: str,
        params_for_k: Callable[[int], Any] | None = None,
    ) -> None:
        self._index = index
        self._labels = labels
        self._params_for_k = params_for_k
        self.max_k = max_k
        self.name = name
        # A StandardGpuResources object must not be used from two threads at once.
        self._lock = threading.Lock()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search float32 (m, d) queries: scores float32 (m, k), ids int64 (m, k), -1 where none."""
        with self._lock:
            if self._params_for_k is None:
                scores, found = self._index.search(queries, k)
            else:
                scores, found = self._index.search(queries, k, params=self._params_for_k(k))
        found = np.asarray(found, dtype=np.int64)
        if self._labels is not None:
            found = labels_at(self._labels, found)
        return np.asarray(scores, dtype=np.float32), found


def flat_replica(vectors: np.ndarray, labels: np.ndarray) -> GpuReplica | None:
    """Exact GPU search over float32 (n, d) ``vectors`` whose ids are ``labels``."""
    try:
        cfg = faiss.GpuIndexFlatConfig()
        cfg.device = 0
        index = faiss.GpuIndexFlatIP(_gpu_resources(), vectors.shape[1], cfg)
        index.add(vectors)
    except Exception:
        log.warning("gpu flat replica failed, searching on cpu", exc_info=True)
        return None
    return GpuReplica(index, labels=labels.copy(), max_k=GPU_MAX_K, name="GpuIndexFlatIP")


def ivf_replica(cpu_index: Any) -> GpuReplica | None:
    """Copy a trained CPU IVF index (external ids inside) to the GPU."""
    try:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, cpu_index, _cloner_options())
    except Exception:
        log.warning("gpu ivf replica failed, searching on cpu", exc_info=True)
        return None
    return GpuReplica(index, labels=None, max_k=GPU_MAX_K, name=type(index).__name__)


def build_ivf_on_gpu(
    cpu_index: Any, train: np.ndarray, vectors: np.ndarray, ids: np.ndarray
) -> tuple[Any, GpuReplica] | None:
    """Train and fill an untrained CPU IVF index on the GPU.

    Returns (trained CPU copy, GPU replica), or None (logged) when the GPU path fails.
    """
    try:
        gpu_index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, cpu_index, _cloner_options())
        gpu_index.train(train)
        gpu_index.add_with_ids(vectors, ids)
        cpu_copy = faiss.index_gpu_to_cpu(gpu_index)
    except Exception:
        log.warning("gpu ivf build failed, building on cpu", exc_info=True)
        return None
    return cpu_copy, GpuReplica(gpu_index, labels=None, max_k=GPU_MAX_K, name=type(gpu_index).__name__)


def cagra_replica(vectors: np.ndarray, labels: np.ndarray, config: IndexConfig) -> GpuReplica | None:
    """A CAGRA graph over float32 (n, d) ``vectors`` whose ids are ``labels``; None without cuVS."""
    if not cagra_available():
        log.info("faiss build has no CAGRA, hnsw searches stay on cpu")
        return None
    try:
        cfg = faiss.GpuIndexCagraConfig()
        cfg.graph_degree = config.hnsw_m
        cfg.intermediate_graph_degree = 2 * config.hnsw_m
        index = faiss.GpuIndexCagra(_gpu_resources(), vectors.shape[1], faiss.METRIC_INNER_PRODUCT, cfg)
        index.train(vectors)  # CAGRA builds its graph in train()
    except Exception:
        log.warning("gpu cagra build failed, hnsw searches stay on cpu", exc_info=True)
        return None

    def params_for_k(k: int) -> Any:
        params = faiss.SearchParametersCagra()
        # itopk_size plays efSearch's part and must hold k; cuVS wants a multiple of 32.
        params.itopk_size = -(-config.hnsw_ef(k) // 32) * 32
        return params

    return GpuReplica(
        index, labels=labels.copy(), max_k=CAGRA_MAX_K, name="GpuIndexCagra", params_for_k=params_for_k
    )
