"""Ranking metrics against hand-computed values, and the full-ranking evaluator's exclusions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.base import Recommender, top_k
from models.data.dataset import leave_last_out
from models.data.preprocess import RawData, preprocess
from models.evaluate import metrics
from models.evaluate.ranking import EvaluationError, evaluate


def test_single_list_hand_computed() -> None:
    # Ranked list [7, 3, 9, 1, 4]; relevant {3, 4, 8}: hits at ranks 1 and 4 (0-based).
    ranked = np.array([[7, 3, 9, 1, 4]])
    hits = np.isin(ranked, [3, 4, 8])
    n_rel = np.array([3])
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg(hits, n_rel, 5)[0] == pytest.approx(dcg / idcg)
    assert metrics.recall(hits, n_rel, 5)[0] == pytest.approx(2 / 3)
    assert metrics.hit_rate(hits, 5)[0] == 1.0
    assert metrics.mrr(hits, 5)[0] == pytest.approx(0.5)
    # Cut at 1: nothing relevant yet.
    assert metrics.ndcg(hits, n_rel, 1)[0] == 0.0
    assert metrics.hit_rate(hits, 1)[0] == 0.0 and metrics.mrr(hits, 1)[0] == 0.0
    # One relevant item at rank 2 (0-based): NDCG = 1/log2(4) = 0.5.
    one = np.array([[False, False, True]])
    assert metrics.ndcg(one, np.array([1]), 3)[0] == pytest.approx(0.5)
    assert metrics.mrr(one, 3)[0] == pytest.approx(1 / 3)
    assert metrics.recall(one, np.array([0]), 3)[0] == 0.0  # no relevant items: 0, not NaN
    assert metrics.coverage(np.array([[0, 1], [1, 2]]), 10, 2) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        metrics.ndcg(hits, n_rel, 6)


def test_top_k_breaks_ties_by_index() -> None:
    scores = np.array([[0.5, 1.0, 1.0, -np.inf, 0.5]], dtype=np.float32)
    assert top_k(scores, 4).tolist() == [[1, 2, 0, 4]]


class Fixed(Recommender):
    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def fit(self, split_or_train, catalog):
        return self

    def score(self, users):
        return self.scores[users]


def test_evaluate_excludes_train_and_valid_items() -> None:
    rows = [("1", "a", 5, 1), ("1", "b", 5, 2), ("1", "c", 5, 3), ("1", "d", 5, 4)]
    inter, catalog, _ = preprocess(RawData(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]),
                                           None, "t", timestamp_unit="s"))
    split = leave_last_out(inter, catalog)  # train a, b; valid c; test d
    # Scores prefer a > b > c > d > e: with exclusions, test ranks d first.
    model = Fixed(np.array([[5.0, 4.0, 3.0, 2.0]], dtype=np.float32))
    res = evaluate(model, split, on="test", ks=(1,))
    assert res["hr@1"] == 1.0 and res["ndcg@1"] == 1.0 and res["n_users"] == 1
    res = evaluate(model, split, on="valid", ks=(1, 2))
    assert res["hr@1"] == 1.0 and res["mrr@2"] == 1.0
    with pytest.raises(EvaluationError):
        evaluate(Fixed(np.zeros((1, 3), np.float32)), split, ks=(1,))


def test_validation_ranking_uses_the_evaluation_ndcg() -> None:
    """Training's early stopping and the report compute one NDCG (models.evaluate.metrics.ndcg)."""
    from models.train.metrics import rank_metrics

    rng = np.random.default_rng(5)
    users = rng.integers(-2, 3, (40, 4)).astype(np.float32)  # small integers: many ties
    items = rng.integers(-2, 3, (30, 4)).astype(np.float32)
    targets = rng.integers(0, 30, 40)
    got = rank_metrics(users, items, targets, None, k=5, batch_size=7)
    # The same ranking by hand: rank = items scoring >= the target, itself left out.
    scores = users @ items.T
    rank = (scores >= scores[np.arange(40), targets][:, None]).sum(1) - 1
    hits = rank[:, None] == np.arange(5)
    assert got["ndcg@5"] == pytest.approx(metrics.ndcg(hits, np.ones(40), 5).mean())
    assert got["hr@5"] == pytest.approx(float((rank < 5).mean()))
    assert got["ndcg@5"] == pytest.approx(np.where(rank < 5, 1 / np.log2(rank + 2.0), 0.0).mean())
