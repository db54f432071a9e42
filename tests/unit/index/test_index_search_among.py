"""VectorIndex.search_among: a filter (the allowed ids) applied inside the search, exclusions too."""

from __future__ import annotations

import numpy as np
import pytest

from index import IndexConfig, build_index

KINDS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=16),
    "ivf": IndexConfig(kind="ivf", ivf_nlist=16, ivf_nprobe=2),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, rng.standard_normal((5, 16)).astype(np.float32)


def exact_among(vectors, query, allowed, k):
    scores = vectors[allowed] @ query
    return allowed[np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("kind", KINDS)
def test_only_allowed_ids_come_back_best_first_and_exclusions_hold(kind, data):
    vectors, queries = data
    ids = np.arange(len(vectors), dtype=np.int64) * 3  # external ids are not row numbers
    index = build_index(vectors, ids, KINDS[kind])
    allowed = ids[::7]  # one item in seven: a category
    exclude = [set(ids[::7][:5].tolist())] + [set()] * (len(queries) - 1)
    scores, found = index.search_among(queries, 10, np.concatenate([allowed, [-5, 10**9]]), exclude=exclude)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())  # ids the index lacks allow nothing
    assert not set(found[0].tolist()) & exclude[0]
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert (found >= 0).all()  # k results whenever k allowed ids are held, on every kind
    if kind == "ivf":
        return  # two of 16 lists probed: ranks are approximate by design
    for row in range(1, len(queries)):
        truth = exact_among(vectors, queries[row], np.arange(0, len(vectors), 7), 10) * 3
        assert len(set(found[row].tolist()) & set(truth.tolist())) >= 9  # HNSW may miss one


@pytest.mark.parametrize("kind", KINDS)
def test_fewer_allowed_than_k_gives_every_one_padded(kind, data):
    vectors, queries = data
    index = build_index(vectors, np.arange(len(vectors), dtype=np.int64), KINDS[kind])
    index.remove(np.array([11]))
    scores, found = index.search_among(queries[:1], 10, [4, 11, 900])  # 11 was removed
    assert sorted(found[0][:2].tolist()) == [4, 900] and found[0][2:].tolist() == [-1] * 8
    assert np.isneginf(scores[0][2:]).all()
