import numpy as np
import pytest

from stream.serving.users_index import UserVectors


def unit(*v):
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_nearest_users_leave_out_the_asker_and_follow_updates():
    users = UserVectors()
    users.upsert(["ann", "bob", "cy"], np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 0, 1)]))
    assert [u for u, _ in users.similar("ann", unit(1, 0, 0), 2)] == ["bob", "cy"]
    # Bob's taste moves next to Cy's; several upserts between queries keep only the newest.
    users.upsert(["bob"], unit(0, 1, 0)[None])
    users.upsert(["bob"], unit(0, 0.1, 1)[None])
    assert [u for u, _ in users.similar("cy", unit(0, 0, 1), 1)] == ["bob"]
    assert len(users) == 3


def test_a_new_dimension_starts_afresh():
    users = UserVectors()
    users.upsert(["ann", "bob"], np.stack([unit(1, 0), unit(0, 1)]))
    users.upsert(["cy"], unit(1, 0, 0)[None])
    assert len(users) == 1
    assert users.similar("ann", unit(1, 0), 3) == []


def test_users_of_partitions_given_up_are_forgotten():
    users = UserVectors()
    users.upsert(["ann", "bob", "cy"], np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0.8, 0.2, 0)]), [0, 1, 2])
    assert users.keep_partitions({0, 2}) == 1
    assert [u for u, _ in users.similar("ann", unit(1, 0, 0), 5)] == ["cy"]
    assert len(users) == 2 and users.keep_partitions({0, 2}) == 0
    users.upsert(["bob"], unit(1, 0, 0)[None], [2])  # bob back, on a partition kept
    assert {u for u, _ in users.similar("ann", unit(1, 0, 0), 5)} == {"bob", "cy"}


def test_forgetting_partitions_holds_for_thousands_of_users():
    # Partitions are kept in an array that grows by doubling (1024 slots to start).
    users = UserVectors()
    names = [f"u{i}" for i in range(3000)]
    vectors = np.random.default_rng(0).standard_normal((3000, 4)).astype(np.float32)
    users.upsert(names[:2000], vectors[:2000], [i % 4 for i in range(2000)])
    users.upsert(names[2000:], vectors[2000:], [i % 4 for i in range(2000, 3000)])
    users.upsert(["u1"], vectors[1][None], [0])  # moved from partition 1 to 0: kept below
    assert users.keep_partitions({0, 2}) == 1499 and len(users) == 1501
    found = {u for u, _ in users.similar("x", vectors[3], 3000)}
    assert found == {n for i, n in enumerate(names) if i % 2 == 0} | {"u1"}


def test_users_read_back_from_a_table_never_replace_fresher_vectors():
    users = UserVectors()
    users.upsert(["ann"], np.stack([unit(1, 0, 0)]), [0])
    added = users.upsert_missing(["ann", "bob"], np.stack([unit(0, 1, 0), unit(0, 0.9, 0.1)]), 0)
    assert added == 1
    assert [u for u, _ in users.nearest(unit(1, 0, 0), 1)] == ["ann"]  # ann kept her own, fresher vector
    assert [u for u, _ in users.nearest(unit(0, 1, 0), 1, exclude=["ann"])] == ["bob"]
    assert users.upsert_missing(["cy"], np.ones((1, 5), dtype=np.float32), 0) == 0  # another dimension


def test_a_stored_states_embedding_is_read_without_building_the_state():
    from stream.core.state import UserState, embedding_of
    from stream.errors import InvalidRecord

    state = UserState()
    assert embedding_of(state.to_bytes()) == (None, None)
    state.embedding, state.model_version = unit(0.6, 0.8, 0), "v7"
    vector, version = embedding_of(state.to_bytes())
    assert np.array_equal(vector, state.embedding) and version == "v7"
    for raw in (b"{", b'{"embedding": 5}', b'{"embedding": "***"}', b"[1]"):
        with pytest.raises(InvalidRecord):
            embedding_of(raw)


def test_neighbours_are_searched_among_users_of_the_same_version_only():
    from stream.serving.users_index import UsersByVersion

    users = UsersByVersion()
    users.upsert("v1", ["ann", "bob"], np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0)]), [0, 0])
    users.upsert("v2", ["cy"], np.stack([unit(1, 0, 0)]), [1])
    assert [u for u, _ in users.nearest("v1", unit(1, 0, 0), 5, exclude=["ann"])] == ["bob"]  # not cy: v2's space
    users.upsert("v2", ["bob"], np.stack([unit(0, 1, 0)]), [0])  # bob re-embedded by v2 leaves v1's index
    assert users.versions() == {"v1": 1, "v2": 2}
    assert users.nearest("v1", unit(1, 0, 0), 5, exclude=["ann"]) == []
    users.upsert("v2", ["ann"], np.stack([unit(1, 0, 0)]), [0])
    assert users.versions() == {"v2": 3}  # v1's emptied index is dropped
    assert users.upsert_missing("v1", ["ann", "dan"], np.stack([unit(1, 0, 0), unit(0, 0, 1)]), 0) == 1
    assert users.versions() == {"v2": 3, "v1": 1} and users.nearest("zz", unit(1, 0, 0), 3) == []
    assert users.keep_partitions({1}) == 4 - 1 and users.versions() == {"v2": 1, "v1": 0}
