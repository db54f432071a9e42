"""The click ranker learns a known separable case; AUC / log-loss; the re-ranking Recommender."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.ranker import ClickRanker, Impressions, RankedTwoTower, RankerConfig, auc, log_loss, make_impressions, train_ranker
from models.train.demo import demo_split


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_learns_separable_clicks() -> None:
    rng = np.random.default_rng(0)
    users = rng.normal(size=(40, 8)).astype(np.float32)
    items = rng.normal(size=(60, 8)).astype(np.float32)
    pairs = rng.integers(0, [40, 60], size=(4000, 2))
    # Clicked iff the user and item agree on the sign of their first coordinate.
    label = (np.sign(users[pairs[:, 0], 0]) == np.sign(items[pairs[:, 1], 0])).astype(np.float32)
    data = Impressions(pairs[:, 0], pairs[:, 1], label)
    model = train_ranker(users, items, data, RankerConfig(epochs=30, batch_size=256, lr=5e-3))
    prob = model.predict_proba(users[pairs[:, 0]], items[pairs[:, 1]])
    assert auc(label, prob) > 0.97
    assert log_loss(label, prob) < 0.3
    assert prob.dtype == np.float32 and ((prob >= 0) & (prob <= 1)).all()


def test_shapes_combine_and_metrics() -> None:
    u, v = torch.randn(5, 4), torch.randn(5, 4)
    assert ClickRanker(4)(u, v).shape == (5,)
    assert ClickRanker(4, combine="concat")(u, v).shape == (5,)
    with pytest.raises(ValueError):
        ClickRanker(4, combine="sum")  # type: ignore[arg-type]
    assert auc(np.array([0, 0, 1, 1.0]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 1.0]), np.array([0.5, 0.5])) == 0.5
    imp = make_impressions(np.array([0, 1]), np.array([[3, 4], [5, 6]]), np.array([4, 9]))
    assert imp.label.tolist() == [0, 1, 0, 0] and imp.user.tolist() == [0, 0, 1, 1]


def test_reranker_recommender_end_to_end() -> None:
    split = demo_split(n_users=150, n_items=60)
    model = RankedTwoTower(config=RankerConfig(n_candidates=10, epochs=3), tower="mean", epochs=2, dim=8,
                           max_len=10, content="tfidf")
    model.fit(split, split.catalog)
    assert model.kind == "ranker" and {"test_auc", "test_logloss"} <= set(model.metrics)
    scores = model.score(np.array([0, 1, 2]))
    assert scores.shape == (3, 60)
    top = np.argsort(-scores, axis=1)[:, :10]
    for r in range(3):  # the re-ranked candidates are never items already in the history
        assert not set(top[r]) & set(model.histories[r].tolist())
