"""The same index code serves "similar users": user vectors under user ids."""

from __future__ import annotations

import numpy as np
import pytest

from index import IndexConfig, build_index
from index.synthetic import EmbeddingWorld

USER_ID_BASE = 5_000_000_000  # user ids live in their own range, far from item ids


@pytest.mark.parametrize("kind", ["auto", "hnsw"])
def test_similar_users_share_a_taste(kind: str) -> None:
    # 30 tight taste groups: a user's nearest other users are from its own group.
    world = EmbeddingWorld(n_clusters=30, cluster_std=0.1, seed=31)
    rng = np.random.default_rng([31, 1])
    groups = rng.integers(0, 30, size=3_000)
    centres = world.sample(30, seed=0)
    users = centres[groups] + 0.02 * rng.standard_normal((3_000, 64)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    user_ids = USER_ID_BASE + np.arange(3_000, dtype=np.int64)

    index = build_index(users, user_ids, IndexConfig(kind=kind))
    asking = np.arange(0, 3_000, 100)
    _, similar = index.search(users[asking], 10, exclude=[{int(user_ids[a])} for a in asking])
    assert not (similar == user_ids[asking][:, None]).any(), "a user is not similar to itself"
    same_group = groups[similar - USER_ID_BASE] == groups[asking][:, None]
    assert same_group.mean() >= 0.99

    # A new user (cold start) is findable at once, without a rebuild.
    newcomer = users[asking[:1]]
    index.add(newcomer, np.array([USER_ID_BASE + 10_000]))
    _, found = index.search(newcomer, 3, exclude=[{int(user_ids[asking[0]])}])
    assert found[0, 0] == USER_ID_BASE + 10_000
