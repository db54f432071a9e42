"""One contract, run against every index type (flat, HNSW, IVF, IVF-PQ)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index import (
    NO_ID,
    DimensionMismatch,
    DuplicateIds,
    IndexConfig,
    InvalidVectors,
    UnknownIds,
    VectorIndex,
    VectorIndexError,
    build_index,
)
from tests.unit.index.conftest import CONFIGS, KINDS, UNIFORM_CONFIGS, Dataset, make_dataset, recall

# recall@100 against exact search; IVF-PQ runs a reduced test configuration (see conftest).
MIN_RECALL_CLUSTERED = {"flat": 1.0, "hnsw": 0.95, "ivf": 0.95, "ivfpq": 0.85}
MIN_RECALL_UNIFORM = {"flat": 1.0, "hnsw": 0.95, "ivf": 0.95, "ivfpq": 0.75}


def test_recall_on_clustered_data(built: VectorIndex, clustered: Dataset) -> None:
    scores, ids = built.search(clustered.queries, 100)
    assert recall(ids, clustered.truth) >= MIN_RECALL_CLUSTERED[built.kind]


def test_flat_matches_numpy_exactly(clustered: Dataset) -> None:
    index = build_index(clustered.items, clustered.ids, CONFIGS["flat"])
    scores, ids = index.search(clustered.queries, 100)
    np.testing.assert_array_equal(ids[:, :10], clustered.truth[:, :10])
    expected = np.sort(clustered.queries @ clustered.items.T, axis=1)[:, ::-1][:, :100]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_recall_on_uniform_data(kind: str, uniform: Dataset) -> None:
    index = build_index(uniform.items, uniform.ids, UNIFORM_CONFIGS[kind])
    _, ids = index.search(uniform.queries, 100)
    assert recall(ids, uniform.truth) >= MIN_RECALL_UNIFORM[kind]


def test_items_find_themselves(built: VectorIndex, clustered: Dataset) -> None:
    rows = np.arange(0, clustered.items.shape[0], 40)
    _, ids = built.search(clustered.items[rows], 1)
    hit = np.mean(ids[:, 0] == clustered.ids[rows])
    assert hit >= (1.0 if built.kind == "flat" else 0.9)


def test_result_shapes_order_and_ids(built: VectorIndex, clustered: Dataset) -> None:
    scores, ids = built.search(clustered.queries[:7], 25)
    assert scores.shape == ids.shape == (7, 25)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert all(np.unique(row).size == row.size for row in ids)
    assert built.contains(ids.ravel()).all()
    assert len(built) == clustered.ids.size
    np.testing.assert_array_equal(built.ids(), np.sort(clustered.ids))
    assert built.dim == 64 and built.describe()["count"] == clustered.ids.size


def test_missing_results_are_padded(kind: str) -> None:
    rng = np.random.default_rng(5)
    items = rng.standard_normal((40, 8)).astype(np.float32)
    config = IndexConfig(kind=kind, pq_m=4, pq_nbits=3) if kind == "ivfpq" else IndexConfig(kind=kind)
    index = build_index(items, np.arange(40) + 100, config)
    scores, ids = index.search(items[:3], 60)
    assert ids.shape == (3, 60)
    got = ids >= 0
    # Valid results come first, then -1 ids with -inf scores.
    assert np.all(np.diff(got.astype(int), axis=1) <= 0)
    assert np.all(ids[~got] == NO_ID) and np.all(np.isneginf(scores[~got]))
    assert np.isfinite(scores[got]).all()
    assert got.sum(axis=1).max() <= 40


def test_empty_query_batch(built: VectorIndex) -> None:
    scores, ids = built.search(np.empty((0, 64), np.float32), 5)
    assert scores.shape == ids.shape == (0, 5)


# ---------------------------------------------------------------- filtering
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_excluded_ids_are_never_returned(built: VectorIndex, clustered: Dataset, data: st.DataObject) -> None:
    m = data.draw(st.integers(1, 4), label="m")
    k = data.draw(st.integers(1, 60), label="k")
    rows = data.draw(st.lists(st.integers(0, clustered.queries.shape[0] - 1), min_size=m, max_size=m), label="rows")
    queries = clustered.queries[rows]
    _, unfiltered = built.search(queries, k + 40)
    exclude = []
    for r in range(m):
        # Mostly the very ids the query would return, plus unknown ids.
        mine = data.draw(st.sets(st.sampled_from(unfiltered[r].tolist()), max_size=k + 20), label="excluded")
        exclude.append(mine | data.draw(st.sets(st.integers(10**9, 10**9 + 50), max_size=3), label="unknown"))
    scores, ids = built.search(queries, k, exclude=exclude)
    for r in range(m):
        assert not set(ids[r].tolist()) & exclude[r]
        # Over-fetching keeps rows full: the index has far more than k + |exclude| items.
        assert (ids[r] >= 0).all()
        assert np.all(np.diff(scores[r]) <= 1e-6)


def test_exclusion_keeps_exact_answer(clustered: Dataset) -> None:
    """Flat search with exclusions equals NumPy's top-k over the remaining items."""
    index = build_index(clustered.items, clustered.ids, CONFIGS["flat"])
    k = 20
    exclude = [set(clustered.truth[r, : 3 * r].tolist()) for r in range(10)]
    _, ids = index.search(clustered.queries[:10], k, exclude=exclude)
    scores = clustered.queries[:10] @ clustered.items.T
    for r in range(10):
        keep = ~np.isin(clustered.ids, list(exclude[r]))
        expected = clustered.ids[keep][np.argsort(-scores[r][keep], kind="stable")[:k]]
        np.testing.assert_array_equal(ids[r], expected)


def test_flat_exclusion_pads_when_too_few_items_remain_and_follows_mutations() -> None:
    """The dense CPU path: rows short of ``k`` after exclusions are padded; add/remove refresh its id lookup."""
    rng = np.random.default_rng(3)
    items = rng.standard_normal((30, 8)).astype(np.float32)
    ids = np.arange(100, 130, dtype=np.int64)
    index = build_index(items, ids, IndexConfig(kind="flat"))
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    exclude = [set(range(100, 110)) | {7, 10**12}, set(), set(ids.tolist())]

    def expected(row: int, k: int, held: np.ndarray, vectors: np.ndarray) -> list[int]:
        keep = ~np.isin(held, list(exclude[row]))
        order = np.argsort(-(vectors[keep] @ queries[row]), kind="stable")[:k]
        return held[keep][order].tolist()

    scores, found = index.search(queries, 25, exclude=exclude)
    assert found[0, :20].tolist() == expected(0, 25, ids, items)
    assert (found[0, 20:] == NO_ID).all() and np.isneginf(scores[0, 20:]).all()
    assert found[1].tolist() == expected(1, 25, ids, items)
    assert (found[2] == NO_ID).all()

    index.remove(ids[10:15])
    extra = rng.standard_normal((5, 8)).astype(np.float32)
    index.add(extra, np.arange(500, 505, dtype=np.int64))
    held = np.concatenate([ids[:10], ids[15:], np.arange(500, 505)])
    vectors = np.concatenate([items[:10], items[15:], extra])
    _, found = index.search(queries[:1], 20, exclude=exclude[:1])
    assert found[0].tolist() == expected(0, 20, held, vectors)


def test_large_exclusion_sets_use_the_selector_path(built: VectorIndex, clustered: Dataset) -> None:
    k = 30
    _, deep = built.search(clustered.queries[:3], 1_500)
    big = [set(row[:1_200].tolist()) for row in deep]  # over exclude_overfetch_max=1024
    scores, ids = built.search(clustered.queries[:3], k, exclude=big)
    for r in range(3):
        assert not set(ids[r].tolist()) & big[r]
        assert (ids[r] >= 0).all()
    if built.kind == "flat":
        cap_raised = build_index(clustered.items, clustered.ids, IndexConfig(kind="flat", exclude_overfetch_max=4096))
        _, via_overfetch = cap_raised.search(clustered.queries[:3], k, exclude=big)
        np.testing.assert_array_equal(ids, via_overfetch)


def test_exclude_must_match_queries(built: VectorIndex, clustered: Dataset) -> None:
    with pytest.raises(InvalidVectors):
        built.search(clustered.queries[:2], 5, exclude=[set()])


# -------------------------------------------------------- add and remove
def test_add_then_remove_round_trip(fresh: VectorIndex, small: Dataset) -> None:
    world_new = make_dataset(np.roll(small.items, 1, axis=1)[:300], small.queries)
    new_ids = np.arange(300, dtype=np.int64) + 50_000
    before = fresh.generation
    assert fresh.add(world_new.items, new_ids) == 0
    assert len(fresh) == small.ids.size + 300 and fresh.generation == before + 1
    _, ids = fresh.search(world_new.items[:50], 1)
    assert np.mean(ids[:, 0] == new_ids[:50]) >= 0.9

    gone = np.concatenate([new_ids[:100], small.ids[:100]])
    assert fresh.remove(gone).size == 0
    assert len(fresh) == small.ids.size + 100
    assert not fresh.contains(gone).any()
    expected = np.sort(np.concatenate([small.ids[100:], new_ids[100:]]))
    np.testing.assert_array_equal(fresh.ids(), expected)
    _, ids = fresh.search(np.concatenate([world_new.items[:100], small.items[:100]]), 10)
    assert not np.isin(ids, gone).any()


def test_add_existing_id_replaces_its_vector(fresh: VectorIndex, small: Dataset) -> None:
    target = int(small.ids[10])
    old = small.items[10:11]
    assert fresh.add(-old, np.array([target])) == 1
    assert len(fresh) == small.ids.size
    _, ids = fresh.search(-old, 1)
    assert ids[0, 0] == target
    scores, ids = fresh.search(old, 50)
    assert target not in ids[0]
    assert np.isin(fresh.ids(), small.ids).all()


def test_remove_unknown_ids_is_reported(fresh: VectorIndex, small: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="index.base"):
        unknown = fresh.remove(np.array([small.ids[0], 999_999_999]))
    np.testing.assert_array_equal(unknown, [999_999_999])
    assert "unknown=1" in caplog.text
    assert len(fresh) == small.ids.size - 1
    with pytest.raises(UnknownIds) as err:
        fresh.remove([small.ids[1], 123_456_789], strict=True)
    np.testing.assert_array_equal(err.value.ids, [123_456_789])
    assert isinstance(err.value, VectorIndexError) and isinstance(err.value, KeyError)
    assert fresh.contains([small.ids[1]])[0], "strict removal must not remove anything"


def test_remove_everything_then_add_back(fresh: VectorIndex, small: Dataset) -> None:
    fresh.remove(small.ids)
    assert len(fresh) == 0
    scores, ids = fresh.search(small.queries[:2], 5)
    assert (ids == NO_ID).all() and np.isneginf(scores).all()
    fresh.add(small.items[:20], small.ids[:20])
    _, ids = fresh.search(small.items[:5], 1)
    np.testing.assert_array_equal(ids[:, 0], small.ids[:5])


# ------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("vectors", "ids", "error"),
    [
        (np.ones((3, 4), np.int32), np.arange(3), InvalidVectors),
        (np.ones(4, np.float32), np.arange(1), InvalidVectors),
        (np.array([[1, np.nan, 0, 0]] * 2, np.float32), np.arange(2), InvalidVectors),
        (np.array([[1, np.inf, 0, 0]] * 2, np.float32), np.arange(2), InvalidVectors),
        (np.ones((3, 4), np.float32), np.array([1, 2, 2]), DuplicateIds),
        (np.ones((3, 4), np.float32), np.array([1, -2, 3]), InvalidVectors),
        (np.ones((3, 4), np.float32), np.arange(2), InvalidVectors),
        (np.ones((3, 4), np.float32), np.array([0.5, 1, 2]), InvalidVectors),
        (np.ones((0, 4), np.float32), np.arange(0), InvalidVectors),
    ],
)
def test_build_refuses_bad_input(kind: str, vectors: np.ndarray, ids: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        build_index(vectors, ids, CONFIGS[kind])


def test_calls_refuse_bad_input(fresh: VectorIndex, small: Dataset) -> None:
    with pytest.raises(DimensionMismatch):
        fresh.search(np.ones((1, 63), np.float32), 5)
    with pytest.raises(DimensionMismatch):
        fresh.add(np.ones((1, 65), np.float32), np.array([1]))
    with pytest.raises(InvalidVectors):
        fresh.search(small.queries, 0)
    with pytest.raises(InvalidVectors):
        fresh.search(small.queries[0], 5)  # (d,) is not (m, d)
    with pytest.raises(DuplicateIds):
        fresh.add(small.items[:2], np.array([7, 7]))
    with pytest.raises(InvalidVectors):
        fresh.add(np.full((1, 64), np.nan, np.float32), np.array([7]))
    assert len(fresh) == small.ids.size, "refused calls must not change the index"
    # ValueError is the builtin base, for callers that do not know this package.
    with pytest.raises(ValueError):
        fresh.search(small.queries, -1)


def test_float64_input_is_converted(kind: str, small: Dataset) -> None:
    index = build_index(small.items.astype(np.float64), small.ids, CONFIGS["flat"] if kind == "flat" else CONFIGS[kind])
    _, ids = index.search(small.items[:3].astype(np.float64), 1)
    assert ids.dtype == np.int64 and (ids >= 0).all()


@pytest.mark.parametrize("base", [0, 2**61])  # packed keys, and ids too large to pack (row by row)
def test_batched_exclusion_mask_matches_per_row_isin(base: int) -> None:
    from index.base import _pairs_in

    rng = np.random.default_rng(3)
    rows = np.array([0, 2, 5])
    ids = base + rng.integers(0, 40, size=(3, 12))
    ids[1, -2:] = -1  # padding rows returned by faiss
    owner = np.repeat(np.arange(6), 7)
    excluded = base + rng.integers(0, 40, size=owner.size)
    mask = _pairs_in(rows, ids, owner, excluded)
    for r, row in enumerate(rows):
        assert (mask[r] == np.isin(ids[r], excluded[owner == row])).all()
