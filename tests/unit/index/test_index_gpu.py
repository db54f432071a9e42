"""GPU path without a GPU: the CPU fallbacks, and the replica logic against a fake GPU.

The fake stands in for faiss's GPU symbols with CPU indexes (``clone_index``),
so everything above faiss (device choice, replica refresh, id mapping, the
routes that must stay on the CPU) runs here; bench/gpu_retrieval.sh runs the
real thing on a GPU machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from index import IndexConfig, build_index, load_index, save_index
from index import gpu as index_gpu
from tests.unit.index.conftest import KINDS, SMALL_CONFIGS, Dataset, recall


class _Counting:
    """A 'GPU index': a CPU index that counts its searches."""

    searches = 0

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def search(self, x: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        _Counting.searches += 1
        return self.inner.search(x, k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _FakeCagra(_Counting):
    def __init__(self, res: Any, d: int, metric: int, cfg: Any) -> None:
        assert metric == faiss.METRIC_INNER_PRODUCT
        super().__init__(faiss.IndexFlatIP(d))

    def train(self, x: np.ndarray) -> None:
        self.inner.add(x)

    def search(self, x: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        assert params.itopk_size >= k and params.itopk_size % 32 == 0
        return super().search(x, k)


class _Options:
    device = 0
    useFloat16 = False
    graph_degree = intermediate_graph_degree = itopk_size = 0


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[_Counting]:
    monkeypatch.setattr(_Counting, "searches", 0)
    monkeypatch.setattr(index_gpu, "_resources", None)
    patches = {
        "get_num_gpus": lambda: 1,
        "StandardGpuResources": object,
        "GpuIndexFlatConfig": _Options,
        "GpuClonerOptions": _Options,
        "GpuIndexFlatIP": lambda res, d, cfg: _Counting(faiss.IndexFlatIP(d)),
        "index_cpu_to_gpu": lambda res, dev, index, co=None: _Counting(faiss.clone_index(index)),
        "index_gpu_to_cpu": lambda index: faiss.clone_index(index.inner),
        "GpuIndexCagra": _FakeCagra,
        "GpuIndexCagraConfig": _Options,
        "SearchParametersCagra": _Options,
    }
    for name, value in patches.items():
        monkeypatch.setattr(faiss, name, value, raising=False)
    return _Counting


def test_no_gpu_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch, small: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with caplog.at_level(logging.WARNING, logger="index.gpu"):
        index = build_index(small.items, small.ids, IndexConfig(kind="ivf", device="gpu"))
    assert index.device == "cpu" and index.describe()["gpu_replica"] is None
    assert "gpu requested but unavailable" in caplog.text
    _, ids = index.search(small.queries, 10)
    assert recall(ids, small.truth[:, :10]) >= 0.95


def test_gpu_count_without_gpu_code(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A CPU-only faiss build reporting a GPU (or a patched count) still uses the CPU."""
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    with caplog.at_level(logging.INFO, logger="index.gpu"):
        assert index_gpu.resolve_device("gpu") == "cpu"
        assert index_gpu.resolve_device("auto") == "cpu"
    assert "no GPU support" in caplog.text
    assert index_gpu.resolve_device("cpu") == "cpu"


def test_broken_gpu_count_means_cpu(fake_gpu: type[_Counting], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(faiss, "get_num_gpus", broken)
    assert index_gpu.resolve_device("auto") == "cpu"


@pytest.mark.parametrize("kind", KINDS)
def test_fake_gpu_serves_searches(kind: str, fake_gpu: type[_Counting], small: Dataset) -> None:
    config = IndexConfig(**{**SMALL_CONFIGS[kind].to_dict(), "device": "gpu"})
    index = build_index(small.items, small.ids, config)
    assert index.device == "gpu"
    scores, ids = index.search(small.queries, 20)
    assert fake_gpu.searches >= 1
    assert index.describe()["gpu_replica"] is not None
    assert recall(ids, small.truth[:, :20]) >= (0.8 if kind == "ivfpq" else 0.95)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_replica_is_rebuilt_after_mutation(fake_gpu: type[_Counting], small: Dataset) -> None:
    index = build_index(small.items[:1000], small.ids[:1000], IndexConfig(kind="flat", device="gpu"))
    index.search(small.queries, 5)
    first = index._replica
    index.add(small.items[1000:1010], small.ids[1000:1010])
    index.remove(small.ids[:5])
    _, ids = index.search(small.items[1000:1010], 1)
    np.testing.assert_array_equal(ids[:, 0], small.ids[1000:1010])
    assert index._replica is not first and fake_gpu.searches == 2
    _, ids = index.search(small.items[:5], 3)
    assert not np.isin(ids, small.ids[:5]).any()


def test_deep_fetches_and_large_exclusions_stay_on_cpu(fake_gpu: type[_Counting], small: Dataset) -> None:
    index = build_index(small.items, small.ids, IndexConfig(kind="flat", device="gpu", exclude_overfetch_max=16))
    _, ids = index.search(small.queries[:2], index_gpu.GPU_MAX_K + 1)
    assert fake_gpu.searches == 0 and (ids[:, : small.ids.size] >= 0).all()
    excluded = [set(small.truth[0, :40].tolist()), set()]
    _, ids = index.search(small.queries[:2], 10, exclude=excluded)
    assert not set(ids[0].tolist()) & excluded[0]
    assert fake_gpu.searches == 1  # only the row without exclusions went to the GPU


def test_gpu_build_failure_falls_back(
    fake_gpu: type[_Counting], monkeypatch: pytest.MonkeyPatch, small: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cudaMalloc error out of memory")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", out_of_memory)
    monkeypatch.setattr(faiss, "GpuIndexFlatIP", out_of_memory)
    with caplog.at_level(logging.WARNING, logger="index.gpu"):
        ivf = build_index(small.items, small.ids, IndexConfig(kind="ivf", device="gpu"))
        flat = build_index(small.items, small.ids, IndexConfig(kind="flat", device="gpu"))
        flat.search(small.queries, 5)
    assert ivf.device == "cpu" and flat.device == "cpu"
    assert "gpu ivf build failed" in caplog.text and "gpu flat replica failed" in caplog.text
    _, ids = ivf.search(small.queries, 10)
    assert recall(ids, small.truth[:, :10]) >= 0.95


def test_hnsw_without_cagra_searches_on_cpu(fake_gpu: type[_Counting], monkeypatch: pytest.MonkeyPatch, small: Dataset) -> None:
    monkeypatch.delattr(faiss, "GpuIndexCagra")
    index = build_index(small.items, small.ids, IndexConfig(kind="hnsw", device="gpu"))
    _, ids = index.search(small.queries, 10)
    assert index.device == "cpu" and fake_gpu.searches == 0
    assert recall(ids, small.truth[:, :10]) >= 0.95


def test_saving_a_gpu_index_stores_a_cpu_copy(fake_gpu: type[_Counting], small: Dataset, tmp_path: Path) -> None:
    index = build_index(small.items, small.ids, IndexConfig(kind="ivf", device="gpu"))
    expected = index.search(small.queries, 10)[1]
    manifest = save_index(index, tmp_path / "ix")
    assert manifest.config["device"] == "gpu"
    loaded, _ = load_index(tmp_path / "ix", device="cpu")
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.search(small.queries, 10)[1], expected)
