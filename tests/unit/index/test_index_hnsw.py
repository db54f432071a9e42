"""HNSW removal: tombstones filtered at search time, compaction rebuilds the graph."""

from __future__ import annotations

import numpy as np

from index import IndexConfig, build_index
from tests.unit.index.conftest import Dataset, recall


def test_tombstones_are_never_returned_and_compaction_frees_them(small: Dataset) -> None:
    index = build_index(small.items, small.ids, IndexConfig(kind="hnsw"))
    # The exact top results of every query: removing them forces the graph past tombstones.
    gone = np.unique(small.truth[:, :5])
    index.remove(gone)
    assert index.describe()["tombstones"] == gone.size
    _, ids = index.search(small.queries, 50)
    assert not np.isin(ids, gone).any() and (ids >= 0).all()

    live_truth = np.array([row[~np.isin(row, gone)][:50] for row in small.truth])
    assert recall(ids, live_truth) >= 0.95

    before = index.generation
    assert index.compact() == gone.size
    assert index.describe()["tombstones"] == 0 and index.describe()["nodes"] == small.ids.size - gone.size
    assert index.generation == before + 1
    _, after = index.search(small.queries, 50)
    assert recall(after, live_truth) >= 0.95
    assert index.compact() == 0


def test_replacing_ids_leaves_one_live_node_each(small: Dataset) -> None:
    index = build_index(small.items, small.ids, IndexConfig(kind="hnsw"))
    index.add(small.items[:20] * 0.5 + small.items[20:40] * 0.5, small.ids[:20])
    _, ids = index.search(small.items[:20], 30)
    assert all(np.unique(row).size == row.size for row in ids), "a replaced id must not come back twice"
    assert index.describe()["tombstones"] == 20 and len(index) == small.ids.size


def test_automatic_compaction_past_the_ratio(small: Dataset) -> None:
    index = build_index(small.items, small.ids, IndexConfig(kind="hnsw", hnsw_compact_ratio=0.1))
    index.remove(small.ids[:150])
    assert index.describe()["tombstones"] == 150  # 7.5 % of 2,000 nodes
    index.remove(small.ids[150:250])
    assert index.describe()["tombstones"] == 0 and index.describe()["nodes"] == small.ids.size - 250
    _, ids = index.search(small.items[250:260], 1)
    np.testing.assert_array_equal(ids[:, 0], small.ids[250:260])


def test_exclusions_past_the_efsearch_are_searched_with_a_selector(small: Dataset) -> None:
    # Up to efSearch - k excluded ids ride on one over-fetch (free: the walk is that wide anyway);
    # a longer history is searched alone with a selector of its ids (and the tombstones), so it
    # never widens the walk to k + |exclude|. Either way: k results, none excluded or removed.
    index = build_index(small.items, small.ids, IndexConfig(kind="hnsw"))
    k = 10
    cap = index._overfetch_cap(k)
    assert cap == IndexConfig().hnsw_ef(k) - k and index._overfetch_buckets(np.array([0, 1, 7, 40, cap]), cap).tolist() == [
        0, 1, 8, cap, cap]
    gone = np.unique(small.truth[:, :2])
    index.remove(gone)
    live = [row[~np.isin(row, gone)] for row in small.truth]
    n = len(small.queries)
    # Alternate rows: a short exclusion (over-fetch) and one past the cap (selector), both the
    # query's own nearest live ids, the hardest ids to exclude.
    exclude = [set(live[r][: 5 if r % 2 else cap + 20].tolist()) for r in range(n)]
    _, ids = index.search(small.queries, k, exclude=exclude)
    assert (ids >= 0).all()
    for r in range(n):
        assert not set(ids[r].tolist()) & (exclude[r] | set(gone.tolist()))
    truth = np.array([[i for i in live[r] if i not in exclude[r]][:k] for r in range(n)])
    assert recall(ids[1::2], truth[1::2]) >= 0.9 and recall(ids[::2], truth[::2]) >= 0.9
