"""Seeded data with known answers, shared by the index tests."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import pytest

from index import IndexConfig, VectorIndex, build_index
from index.synthetic import EmbeddingWorld, uniform_sphere

KINDS = ("flat", "hnsw", "ivf", "ivfpq")

# Defaults except IVF-PQ, whose default codebooks (one per dimension, 8 bits) take
# several seconds to train on two cores; bench/retrieval.py measures the defaults.
CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw"),
    "ivf": IndexConfig(kind="ivf"),
    "ivfpq": IndexConfig(kind="ivfpq", pq_m=32, pq_nbits=6, pq_train_size=2_500),
}
# Uniform vectors in 64 dimensions are the worst case: search wider.
UNIFORM_CONFIGS = {
    "flat": CONFIGS["flat"],
    "hnsw": IndexConfig(kind="hnsw", hnsw_ef_search=256),
    # 5,000 items make 64 lists; uniform data needs most of them visited.
    "ivf": IndexConfig(kind="ivf", ivf_nprobe=56),
    "ivfpq": IndexConfig(kind="ivfpq", pq_m=32, pq_nbits=6, pq_train_size=2_500, ivf_nprobe=56),
}
# Small, quick builds for tests that mutate their index.
SMALL_CONFIGS = {
    **CONFIGS,
    "ivfpq": IndexConfig(kind="ivfpq", pq_m=32, pq_nbits=5, pq_train_size=1_500),
}


@dataclass(frozen=True)
class Dataset:
    """Items, their ids (not positions: ``7 * i + 3``), queries and exact top-100 by NumPy."""

    items: np.ndarray
    ids: np.ndarray
    queries: np.ndarray
    truth: np.ndarray  # (m, 100) ids of the exact top-100, computed without faiss


def make_dataset(items: np.ndarray, queries: np.ndarray) -> Dataset:
    ids = np.arange(items.shape[0], dtype=np.int64) * 7 + 3
    scores = queries @ items.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    return Dataset(items, ids, queries, ids[top])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f[:k], t).size / k for f, t in zip(found, truth)]))


@pytest.fixture(scope="session")
def clustered() -> Dataset:
    world = EmbeddingWorld(seed=11)
    return make_dataset(world.sample(8_000, seed=1), world.sample(100, seed=2))


@pytest.fixture(scope="session")
def uniform() -> Dataset:
    return make_dataset(uniform_sphere(5_000, 64, seed=3), uniform_sphere(100, 64, seed=4))


@pytest.fixture(scope="session")
def small() -> Dataset:
    world = EmbeddingWorld(seed=12)
    return make_dataset(world.sample(2_000, seed=1), world.sample(20, seed=2))


@pytest.fixture(scope="session", autouse=True)
def _one_faiss_thread() -> None:
    # On a shared 2-core machine OpenMP barriers wait for descheduled threads:
    # an IVF-PQ build measured 9.8 s with two threads and 0.3 s with one.
    faiss.omp_set_num_threads(1)


_built: dict[str, VectorIndex] = {}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def built(kind: str, clustered: Dataset) -> VectorIndex:
    """The session's read-only index of ``kind`` over ``clustered``: tests must not mutate it."""
    if kind not in _built:
        _built[kind] = build_index(clustered.items, clustered.ids, CONFIGS[kind])
    return _built[kind]


@pytest.fixture
def fresh(kind: str, small: Dataset) -> VectorIndex:
    """A new index of ``kind`` over ``small``, the test's own to mutate."""
    return build_index(small.items, small.ids, SMALL_CONFIGS[kind])
