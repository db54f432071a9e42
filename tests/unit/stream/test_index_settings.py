"""STREAMREC_INDEX_* reach every index the product builds: the worker's catalogue and
users indexes, a version's index built on load, the trainer's saved index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index import FlatIndex, HnswIndex, IndexConfig, load_index
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


def test_a_catalogue_that_outgrows_its_index_kind_is_reindexed_at_the_new_size():
    # A version's index is built for its own items (flat for a few); a large catalogue taken in
    # afterwards must be served by the kind the settings choose for the new size.
    items = generate_demo_dataset(n_users=5, n_items=200, events_per_user=2, seed=1).items
    config = IndexConfig(auto_flat_max=50, auto_hnsw_max=10_000)
    model = bootstrap_model(items[:40], dim=16, index_config=config)
    assert isinstance(model.index, FlatIndex)
    model.remove_items([items[3]["item_id"]])
    before = model.vectors.copy()
    assert model.add_items(items[40:45]) == 5 and isinstance(model.index, FlatIndex)  # 44 live: still flat
    assert model.add_items(items[45:]) == 155
    assert isinstance(model.index, HnswIndex) and len(model.index) == 199  # the removed item stays out
    np.testing.assert_array_equal(model.vectors[:40], before[:40])  # rows never move
    assert model.vectors.shape == (200, 16)
    fresh = model.positions[items[150]["item_id"]]
    found, _ = model.search_positions(model.vectors[fresh][None, :], 5, [np.array([], dtype=np.int64)])
    assert fresh in list(found[0])
    assert model.positions.get(items[3]["item_id"]) is None and 3 not in model.index.ids().tolist()


def test_an_ivf_index_that_a_catalogue_outgrows_is_rebuilt_with_lists_for_the_new_size():
    # IVF adds go into the lists it has: a version's index of a few items taking a catalogue ten
    # times larger kept its few lists, each ten times longer, and every query scanned nprobe of them.
    from index import IvfFlatIndex

    items = generate_demo_dataset(n_users=5, n_items=4_000, events_per_user=2, seed=1).items
    config = IndexConfig(kind="ivf", ivf_train_per_list=2, ivf_nprobe=4)
    model = bootstrap_model(items[:200], dim=16, index_config=config)
    assert isinstance(model.index, IvfFlatIndex)
    small = model.index._index.nlist
    assert small == config.resolve_nlist(200) and not model.index.outgrown(200)
    assert model.add_items(items[200:260]) == 60 and model.index._index.nlist == small  # not yet: same lists
    assert model.index.outgrown(4_000)
    assert model.add_items(items[260:]) == 3_740
    assert model.index._index.nlist == config.resolve_nlist(4_000) > small and len(model.index) == 4_000
    fresh = model.positions[items[3_500]["item_id"]]
    found, _ = model.search_positions(model.vectors[fresh][None, :], 5, [np.array([], dtype=np.int64)])
    assert fresh in list(found[0])


def test_vectors_grow_by_doubling_not_by_copying_every_batch():
    items = generate_demo_dataset(n_users=5, n_items=3000, events_per_user=2, seed=1).items
    model = bootstrap_model([], dim=8)
    stores = set()
    for start in range(0, 3000, 10):
        model.add_items(items[start:start + 10])
        stores.add(id(model._store))
    assert model.vectors.shape == (3000, 8) and len(stores) <= 4  # 1024 -> 2048 -> 4096, not 300 copies
    np.testing.assert_allclose(model.vectors[2990:], model.content_encoder.encode_items(items[2990:]), atol=1e-6)


def test_a_catalogue_added_a_chunk_at_a_time_builds_its_index_once_at_its_final_kind(monkeypatch):
    # The worker decodes a large catalogue a chunk at a time (stream.runtime.worker.catalog_chunks):
    # built chunk by chunk, a million items would go flat -> HNSW -> IVF, a full build each time.
    import stream.serving.model as serving_model
    from stream.core.items import parse_item
    from stream.runtime.worker import catalog_chunks

    items = generate_demo_dataset(n_users=5, n_items=300, events_per_user=2, seed=1).items
    builds = []
    real_build = serving_model.build_index
    monkeypatch.setattr(serving_model, "build_index",
                        lambda v, ids, config: builds.append(len(ids)) or real_build(v, ids, config))
    config = IndexConfig(auto_flat_max=50, auto_hnsw_max=10_000)
    chunked = bootstrap_model([], dim=16, index_config=config)
    stored = [parse_item(it).encode() for it in items] + [parse_item(items[7]).encode()]  # an id twice
    assert chunked.add_items(catalog_chunks(stored, size=40), chunked=True) == 300
    assert builds == [300] and isinstance(chunked.index, HnswIndex) and len(chunked.index) == 300
    whole = bootstrap_model(items, dim=16, index_config=config)  # the same items in one list
    assert chunked.item_ids == whole.item_ids and chunked.titles == whole.titles
    np.testing.assert_allclose(chunked.vectors, whole.vectors, atol=1e-6)
