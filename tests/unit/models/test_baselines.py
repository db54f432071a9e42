"""One contract test for every registered baseline, on seeded block-structured data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import NotFittedError, Recommender
from models.baselines import ItemKNN, MostPopular
from models.data.dataset import IdMap, Interactions, ItemCatalog, leave_last_out
from models.evaluate.registry import available_models, make_model, register_model

N_BLOCKS, USERS_PER_BLOCK, ITEMS_PER_BLOCK, SEEN = 4, 20, 10, 6
# Few factors: with 64 factors on 40 items MF can fit the training cells and rank the rest arbitrarily.
FAST = {"bpr": {"iterations": 100, "factors": 8, "learning_rate": 0.05}, "als": {"iterations": 10, "factors": 8}}


def block_data(seed: int = 0) -> tuple[Interactions, ItemCatalog, np.ndarray, np.ndarray]:
    """Users of block b interact with SEEN random items of block b only; item text names its block."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for b in range(N_BLOCKS):
        for u in range(b * USERS_PER_BLOCK, (b + 1) * USERS_PER_BLOCK):
            chosen = rng.choice(ITEMS_PER_BLOCK, SEEN, replace=False) + b * ITEMS_PER_BLOCK
            users += [u] * SEEN
            items += chosen.tolist()
    n = len(users)
    n_users, n_items = N_BLOCKS * USERS_PER_BLOCK, N_BLOCKS * ITEMS_PER_BLOCK
    inter = Interactions(
        user=np.array(users, np.int64), item=np.array(items, np.int64), timestamp=np.arange(n, dtype=np.int64),
        weight=np.ones(n, np.float32), users=IdMap(tuple(f"u{i}" for i in range(n_users))),
        items=IdMap(tuple(f"i{i}" for i in range(n_items))),
    )
    words = ["alpha", "bravo", "charlie", "delta"]
    item_block = np.arange(n_items) // ITEMS_PER_BLOCK
    catalog = ItemCatalog(
        items=inter.items,
        title=[f"{words[b]} {i}" for i, b in enumerate(item_block)],
        text=[f"{words[b]} {words[b]} story number{i}" for i, b in enumerate(item_block)],
        tags=[[words[b]] for b in item_block],
    )
    user_block = np.arange(n_users) // USERS_PER_BLOCK
    return inter, catalog, user_block, item_block


@pytest.fixture(scope="module")
def data():
    return block_data()


@pytest.mark.parametrize("name", available_models())
def test_contract(name: str, data) -> None:
    inter, catalog, user_block, item_block = data
    model = make_model(name, **FAST.get(name, {}))
    assert isinstance(model, Recommender) and model.kind in ("baseline", "two_tower", "ranker")
    with pytest.raises(NotFittedError):
        model.score(np.array([0]))
    assert model.fit(inter, catalog) is model
    users = np.arange(inter.n_users)
    scores = model.score(users)
    assert scores.shape == (inter.n_users, inter.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # Same seed, same data: the same scores.
    again = make_model(name, **FAST.get(name, {})).fit(inter, catalog).score(users)
    np.testing.assert_allclose(again, scores, rtol=1e-5, atol=1e-6)
    # A Split is accepted too (trains on split.train).
    split = leave_last_out(inter, catalog)
    assert make_model(name, **FAST.get(name, {})).fit(split, catalog).score(users[:3]).shape == (3, inter.n_items)
    if name == "pop":
        counts = np.bincount(inter.item, minlength=inter.n_items)
        assert np.argmax(scores[0]) == np.argmax(counts)
        return
    # Known answer: the unseen items of the user's own block come first.
    top = model.recommend(users, ITEMS_PER_BLOCK - SEEN, exclude=inter.matrix())
    in_block = item_block[top] == user_block[:, None]
    assert in_block.mean() >= 0.9, f"{name}: {in_block.mean():.2f} of top items in the user's block"


def test_item_knn_neighbour_limit_and_fold_in(data) -> None:
    inter, catalog, _, _ = data
    full = ItemKNN().fit(inter, catalog)
    one = ItemKNN(k=1).fit(inter, catalog)
    assert ((one.similarity > 0).sum(axis=0) <= 1).all()
    assert (full.similarity > 0).sum() > (one.similarity > 0).sum()
    assert np.all(np.diag(full.similarity) == 0)
    before = full.score(np.array([0])).copy()
    head = inter.subset(inter.user != 0)
    full.fold_in(head)  # user 0 now has no history
    assert np.all(full.score(np.array([0])) == 0) and before.any()
    with pytest.raises(ValueError):
        ItemKNN(k=0)


def test_registry() -> None:
    with pytest.raises(ValueError):
        register_model("pop", MostPopular)
    with pytest.raises(KeyError, match="registered"):
        make_model("nope")
    register_model("pop-copy", MostPopular)
    try:
        assert "pop-copy" in available_models()
    finally:
        from models.evaluate import registry

        registry._REGISTRY.pop("pop-copy")


@pytest.mark.parametrize("k,binary", [(None, True), (5, False), (1, False)])
def test_item_knn_sparse_path_matches_dense(k: int | None, binary: bool) -> None:
    """Above ``max_dense_bytes`` the similarity is scipy.sparse; scores and top-10 are those of the dense one."""
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    n_users, n_items, n = 60, 80, 700
    inter = Interactions(
        user=rng.integers(0, n_users, n).astype(np.int64), item=rng.integers(0, n_items, n).astype(np.int64),
        timestamp=np.arange(n, dtype=np.int64), weight=rng.uniform(0.5, 4.0, n).astype(np.float32),
        users=IdMap(tuple(f"u{i}" for i in range(n_users))), items=IdMap(tuple(f"i{i}" for i in range(n_items))),
    )
    catalog = ItemCatalog(inter.items, list(inter.items.ids), list(inter.items.ids), [[] for _ in range(n_items)])
    dense = ItemKNN(k=k, binary=binary).fit(inter, catalog)
    sparse = ItemKNN(k=k, binary=binary, max_dense_bytes=0).fit(inter, catalog)
    assert isinstance(dense.similarity, np.ndarray) and sp.issparse(sparse.similarity)
    assert sparse.similarity.diagonal().max() == 0
    if k is not None:
        assert (sparse.similarity.getnnz(axis=0) <= k).all()
    users = np.arange(n_users)
    np.testing.assert_allclose(sparse.score(users), dense.score(users), rtol=1e-5, atol=1e-6)
    seen = inter.matrix()
    np.testing.assert_array_equal(sparse.recommend(users, 10, exclude=seen), dense.recommend(users, 10, exclude=seen))
