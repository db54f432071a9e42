"""STREAMREC_INDEX_* reach every index the product builds: the worker's catalogue and
users indexes, a version's index built on load, the trainer's saved index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index import HnswIndex, IndexConfig, load_index
from models.data.synthetic import generate_demo_dataset
from stream.serving.model import bootstrap_model
from stream.serving.users_index import UserVectors
from stream.settings import Settings

HNSW = Settings(index_kind="hnsw", index_hnsw_m=8, index_hnsw_ef_search=16).index_config()


def test_catalogue_index_is_built_as_configured():
    items = generate_demo_dataset(n_users=5, n_items=30, events_per_user=2, seed=1).items
    model = bootstrap_model(items, dim=16, index_config=HNSW)
    assert isinstance(model.index, HnswIndex) and model.index.config == HNSW
    # An empty catalogue builds its index when the first items come, with the same settings.
    empty = bootstrap_model([], dim=16, index_config=HNSW)
    assert empty.index is None and empty.add_items(items[:5]) == 5
    assert isinstance(empty.index, HnswIndex) and empty.index.config == HNSW
    assert bootstrap_model(items, dim=16).index.config == IndexConfig()  # nothing set: as before


def test_users_index_is_built_as_configured():
    users = UserVectors(HNSW)
    users.upsert(["ann", "bob"], np.eye(2, 4, dtype=np.float32))
    assert len(users) == 2 and isinstance(users._index, HnswIndex) and users._index.config == HNSW


def test_trainer_saves_the_configured_index(tmp_path: Path):
    from stream.trainer.run import _index_builder

    vectors = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    _index_builder(vectors, tuple(f"i{n}" for n in range(40)), tmp_path, config=HNSW)
    index, _ = load_index(tmp_path)
    assert isinstance(index, HnswIndex) and index.config == HNSW
