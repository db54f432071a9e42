"""IndexHolder: atomic swaps while other threads search."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from index import IndexConfig, IndexHolder, VectorIndexError, build_index, save_index
from index.synthetic import EmbeddingWorld

N = 3_000
SPAN = 1_000_000  # version v's ids are [v * SPAN, v * SPAN + N): disjoint ranges


def _versions(count: int) -> list:
    world = EmbeddingWorld(seed=21)
    kinds = ("flat", "hnsw", "ivf")
    return [
        build_index(world.sample(N, seed=v), np.arange(N) + v * SPAN, IndexConfig(kind=kinds[v % 3]))
        for v in range(count)
    ]


def test_swap_under_concurrent_searches() -> None:
    versions = _versions(4)
    holder = IndexHolder(versions[0], "0")
    queries = EmbeddingWorld(seed=21).sample(16, seed=99)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()

    def searcher() -> None:
        try:
            while not stop.is_set():
                result = holder.search(queries, 20, exclude=[set()] * 16)
                v = int(result.version)
                seen.add(result.version)
                # Every id of one call comes from the version the result is tagged with.
                assert (result.ids // SPAN == v).all(), (v, np.unique(result.ids // SPAN))
                snap = holder.snapshot()
                _, ids = snap.index.search(queries[:2], 5)
                assert (ids // SPAN == int(snap.version)).all()
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for swap in range(1, 25):
        v = swap % len(versions)
        previous = holder.swap(versions[v], str(v))
        assert previous is not None
        threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[0]
    assert len(seen) >= 2


def test_snapshot_outlives_swap() -> None:
    old, new = _versions(2)
    holder = IndexHolder(old, "0")
    snap = holder.snapshot()
    holder.swap(new, "1")
    _, ids = snap.index.search(EmbeddingWorld(seed=21).sample(2, seed=5), 5)
    assert (ids // SPAN == 0).all() and holder.version == "1"


def test_empty_holder_refuses_search() -> None:
    holder = IndexHolder()
    assert holder.version is None
    with pytest.raises(VectorIndexError, match="no index"):
        holder.search(np.ones((1, 4), np.float32), 1)


def test_load_swaps_in_the_manifest_version(tmp_path: Path) -> None:
    (index,) = _versions(1)
    manifest = save_index(index, tmp_path / "ix", version="2026-11-28.1")
    holder = IndexHolder()
    assert holder.load(tmp_path / "ix") is None
    assert holder.version == manifest.index_version == "2026-11-28.1"
    assert len(holder.snapshot().index) == N


def test_mutation_during_searches_is_safe() -> None:
    (index,) = _versions(1)
    world = EmbeddingWorld(seed=21)
    extra = world.sample(200, seed=77)
    queries = world.sample(8, seed=78)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                scores, ids = index.search(queries, 10)
                assert (ids >= 0).all() and np.isfinite(scores).all()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    for i in range(20):
        index.add(extra[i * 10 : (i + 1) * 10], np.arange(10) + 10_000 + i * 10)
        index.remove(np.arange(5) + 10_000 + i * 10)
    stop.set()
    t.join(timeout=30)
    assert not errors, errors[0]
    assert len(index) == N + 100
