"""Losses against hand-computed values, training windows, smoke training of every tower, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.train.config import TrainConfig
from models.train.data import epoch_batches, make_windows
from models.train.demo import demo_split
from models.train.loop import train_two_tower
from models.train.losses import bce_loss, full_softmax_loss, in_batch_log_q, sampled_softmax_loss
from models.train.metrics import rank_metrics


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def split():
    return demo_split(n_users=200, n_items=100)


def test_logq_sampled_softmax_hand_computed() -> None:
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cands = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = [0.5, 0.25, 0.25]
    log_q = torch.log(torch.tensor(q))
    loss = sampled_softmax_loss(query, cands, torch.tensor([0, 2]), log_q)
    row0 = [1 - math.log(0.5), 0 - math.log(0.25), 1 - math.log(0.25)]
    row1 = [0 - math.log(0.5), 1 - math.log(0.25), 1 - math.log(0.25)]
    ce0 = -row0[0] + math.log(sum(math.exp(x) for x in row0))
    ce1 = -row1[2] + math.log(sum(math.exp(x) for x in row1))
    assert float(loss) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    # Without correction it is the plain softmax over the candidates.
    plain = sampled_softmax_loss(query, cands, torch.tensor([0, 2]))
    assert float(plain) == pytest.approx(float(full_softmax_loss(query, cands, torch.tensor([0, 2]))))


def test_in_batch_log_q_and_bce() -> None:
    p = torch.tensor([0.5, 1e-4])
    expected = [math.log(1 - 0.5**3), math.log(1 - (1 - 1e-4) ** 3)]
    np.testing.assert_allclose(in_batch_log_q(p, 3).numpy(), expected, rtol=1e-4)
    q = torch.tensor([[1.0, 0.0]])
    got = bce_loss(q, torch.tensor([[2.0, 0.0]]), torch.tensor([[[-1.0, 0.0]]]))
    want = (-math.log(1 / (1 + math.exp(-2))) - math.log(1 - 1 / (1 + math.exp(1)))) / 2
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_make_windows_covers_every_position_once() -> None:
    seqs = [np.arange(7), np.array([3]), np.array([4, 5])]
    inputs, targets = make_windows(seqs, max_len=3)
    assert inputs.shape == targets.shape == (3, 3)
    # Every item after the first of each sequence is a target exactly once.
    assert sorted((targets[targets > 0] - 1).tolist()) == [1, 2, 3, 4, 5, 5, 6]
    assert inputs[0].tolist() == [4, 5, 6] and targets[0].tolist() == [5, 6, 7]
    last_inputs, _ = make_windows(seqs, max_len=3, mode="last")
    assert len(last_inputs) == 2


def test_epoch_batches_shard_equally() -> None:
    a = epoch_batches(11, 4, epoch=0, seed=1, rank=0, world=2)
    b = epoch_batches(11, 4, epoch=0, seed=1, rank=1, world=2)
    assert len(a) == len(b)
    assert set(np.concatenate(a + b).tolist()) == set(range(11))


def test_rank_metrics_excludes_and_ranks() -> None:
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[3.0, 0], [2.0, 0], [1.0, 0]], dtype=np.float32)
    import scipy.sparse as sp

    m = rank_metrics(users, items, np.array([1]), None, k=1)
    assert m["hr@1"] == 0.0
    m = rank_metrics(users, items, np.array([1]), sp.csr_matrix(np.array([[1, 0, 0]])), k=1)
    assert m["hr@1"] == 1.0 and m["ndcg@1"] == 1.0


@pytest.mark.parametrize("tower,loss", [("mean", "sampled_softmax"), ("gru", "full_softmax"),
                                        ("cnn", "bce"), ("sasrec", "sampled_softmax")])
def test_smoke_training_learns(split, tower: str, loss: str) -> None:
    cfg = TrainConfig(tower=tower, loss=loss, dim=16, max_len=20, epochs=4, patience=4, batch_size=64,
                      content="tfidf", progress=False, n_layers=1, lr=3e-3)
    trained = train_two_tower(split, cfg)
    hist = trained.metrics["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    # Random full ranking over ~75 unseen items gives HR@10 ~ 0.13.
    assert trained.metrics["valid"]["hr@10"] > 0.25
    scores = trained.score(np.array([0, 5]))
    assert scores.shape == (2, split.train.n_items) and scores.dtype == np.float32


def test_seeded_runs_are_identical(split) -> None:
    cfg = TrainConfig(tower="sasrec", dim=8, max_len=10, epochs=1, max_steps=3, progress=False, seed=3)
    a, b = train_two_tower(split, cfg), train_two_tower(split, cfg)
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    c = train_two_tower(split, TrainConfig(**{**cfg.__dict__, "seed": 4}))
    assert not np.array_equal(a.item_embeddings, c.item_embeddings)


def test_config_validation_and_json() -> None:
    cfg = TrainConfig(tower="gru", lr=3e-4)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=1.5)


def test_recommender_adapter_registered(split) -> None:
    import models.train.recommender  # noqa: F401
    from models.evaluate.registry import available_models, make_model

    assert {"two_tower_mean", "two_tower_gru", "two_tower_cnn", "two_tower_sasrec"} <= set(available_models())
    model = make_model("two_tower_mean", epochs=1, max_len=10, dim=8)
    assert model.kind == "two_tower"
    model.fit(split, split.catalog)
    model.fold_in(split.train.concat(split.valid))
    assert model.score(np.array([1])).shape == (1, split.train.n_items)


@pytest.mark.parametrize("kind", ["bow", "word2vec"])
def test_other_content_featurizers(split, kind: str) -> None:
    cfg = TrainConfig(tower="mean", dim=8, max_len=10, epochs=1, max_steps=1, content=kind, progress=False)
    trained = train_two_tower(split, cfg)
    assert trained.model.item_tower.n_features > 0 and trained.featurizer is not None
