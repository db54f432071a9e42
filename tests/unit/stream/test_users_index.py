import numpy as np

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
