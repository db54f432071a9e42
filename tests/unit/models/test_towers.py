"""Contract tests run against every user tower, and the item tower's cold start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.towers import USER_TOWERS, ItemTower, TwoTower, left_pad, make_user_tower, to_tokens

N_ITEMS, DIM, N_FEATURES = 30, 16, 7


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _item_tower(id_dropout: float = 0.0) -> ItemTower:
    content = np.random.default_rng(0).random((N_ITEMS, N_FEATURES)).astype(np.float32)
    return ItemTower(N_ITEMS, DIM, content, id_dropout=id_dropout)


@pytest.fixture(params=sorted(USER_TOWERS))
def tower(request: pytest.FixtureRequest):
    return make_user_tower(request.param, _item_tower(), max_len=12, dropout=0.3).eval()


def test_shapes_and_dtype(tower) -> None:
    tokens = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    assert tower(tokens).shape == (3, DIM) and tower(tokens).dtype == torch.float32
    seq = tower.forward_sequence(tokens)
    assert seq.shape == (3, 5, DIM)
    assert torch.all(seq[0, :2] == 0), "padded positions must be zero"


def test_padding_does_not_change_output(tower) -> None:
    short = torch.tensor([[3, 4, 5]])
    long = torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4, 5]])
    torch.testing.assert_close(tower(short), tower(long), rtol=1e-5, atol=1e-5)
    w_short, w_long = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[9.0] * 6 + [1.0, 2.0, 0.5]])
    torch.testing.assert_close(tower(short, w_short), tower(long, w_long), rtol=1e-5, atol=1e-5)


def test_all_padding_row_is_zero_and_finite(tower) -> None:
    out = tower(torch.zeros(2, 6, dtype=torch.int64))
    assert torch.all(out == 0)


def test_causal_future_items_do_not_leak(tower) -> None:
    a = torch.tensor([[0, 1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[0, 1, 2, 3, 9, 8, 7]])
    sa, sb = tower.forward_sequence(a), tower.forward_sequence(b)
    torch.testing.assert_close(sa[:, :4], sb[:, :4], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sa[:, -1], sb[:, -1])
    # Position t of the full sequence equals the encoding of the prefix up to t.
    torch.testing.assert_close(sa[:, 3], tower(torch.tensor([[1, 2, 3]])), rtol=1e-5, atol=1e-5)


def test_encode_matches_batch_path_and_truncates(tower) -> None:
    history = np.arange(20) % N_ITEMS  # longer than max_len=12
    vec = tower.encode(history)
    assert vec.dtype == np.float32 and vec.shape == (DIM,)
    batch = tower(torch.as_tensor(left_pad([history], tower.max_len)))
    np.testing.assert_allclose(vec, batch[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    assert np.all(tower.encode([]) == 0)


def test_gradients_reach_the_item_tower(tower) -> None:
    tower.train()
    tower(torch.tensor([[0, 1, 2, 3]])).sum().backward()
    assert tower.item_tower.id_embedding.weight.grad is not None


def test_to_tokens_and_left_pad() -> None:
    assert to_tokens(np.array([0, 4, -1])).tolist() == [1, 5, 0]
    assert left_pad([np.array([2, 3]), np.array([], dtype=np.int64)], 3).tolist() == [[0, 3, 4], [0, 0, 0]]


def test_item_tower_cold_start_from_content_only() -> None:
    tower = _item_tower().eval()
    features = tower.content[1:4].numpy()
    cold = tower.from_content(features)
    with torch.no_grad():
        tower.id_embedding.weight.zero_()  # as if no id were ever trained
        np.testing.assert_allclose(cold.detach().numpy(), tower.all_items()[:3].numpy(), rtol=1e-5, atol=1e-6)
    assert cold.abs().sum() > 0
    assert torch.all(tower(torch.tensor([0])) == 0), "padding token maps to zero"
    with pytest.raises(ValueError):
        tower.from_content(np.zeros((2, N_FEATURES + 1), dtype=np.float32))


def test_item_tower_id_dropout_only_in_training() -> None:
    tower = _item_tower(id_dropout=0.5)
    tokens = torch.arange(1, N_ITEMS + 1)
    tower.train()
    content_only = tower.from_content(tower.content[1:])
    dropped = torch.isclose(tower(tokens), content_only).all(dim=1)
    assert 0 < int(dropped.sum()) < N_ITEMS
    tower.eval()
    assert not torch.isclose(tower(tokens), content_only).all(dim=1).any()


def test_two_tower_rebuilds_from_spec() -> None:
    spec = {"tower": "sasrec", "n_items": N_ITEMS, "n_features": 0, "dim": DIM, "max_len": 8,
            "dropout": 0.1, "n_layers": 1, "n_heads": 2}
    a, b = TwoTower(spec), TwoTower(spec)
    b.load_state_dict(a.state_dict())
    np.testing.assert_allclose(a.item_vectors(), b.item_vectors())
    assert a.user_vectors([np.array([1, 2]), np.array([], dtype=np.int64)]).shape == (2, DIM)
    with pytest.raises(ValueError):
        make_user_tower("lstm", _item_tower())


def test_one_list_of_towers() -> None:
    """models.towers.config.TOWERS names every user tower, in the registry and the config's choices."""
    import typing

    from models.towers.config import TOWERS, TowerConfig
    from models.towers.model import _TOWER_ARGS
    from models.train.config import TrainConfig

    assert tuple(USER_TOWERS) == TOWERS and tuple(_TOWER_ARGS) == TOWERS
    assert typing.get_args(typing.get_type_hints(TrainConfig)["tower"]) == TOWERS
    with pytest.raises(ValueError, match="tower='lstm'"):
        TowerConfig(tower="lstm")  # type: ignore[arg-type]
    cfg = TrainConfig(tower="cnn", dim=8, lr=0.01)
    assert cfg.tower_config() == TowerConfig(tower="cnn", dim=8)
    assert TowerConfig.from_spec(cfg.tower_spec(5, 3)) == cfg.tower_config()


def test_id_backoff_leans_rare_items_on_their_content() -> None:
    content = np.random.default_rng(0).random((N_ITEMS, N_FEATURES)).astype(np.float32)
    tower = ItemTower(N_ITEMS, DIM, content, id_dropout=0.0, id_backoff=4.0).eval()
    counts = np.zeros(N_ITEMS, dtype=np.int64)
    counts[0], counts[1] = 12, 4  # item 2 onwards: never seen in training
    tower.set_id_counts(counts)
    assert tower.id_gate[1:4].tolist() == pytest.approx([12 / 16, 4 / 8, 0.0]) and float(tower.id_gate[0]) == 0.0
    with torch.no_grad():
        vecs = tower.all_items()
        from_content = tower.from_content(content)
        ids = tower.id_embedding.weight[1:]
    # An unseen item is its content alone; a seen one keeps n / (n + 4) of its id vector.
    assert torch.allclose(vecs[2:], from_content[2:], atol=1e-6)
    assert torch.allclose(vecs[0], from_content[0] + 0.75 * ids[0], atol=1e-6)
    # The gate is part of the saved weights, so a loaded version scores the same.
    spec = {"tower": "mean", "n_items": N_ITEMS, "n_features": N_FEATURES, "dim": DIM, "max_len": 5,
            "dropout": 0.0, "id_backoff": 4.0}
    a, b = TwoTower(spec, content), TwoTower(spec, content)
    a.item_tower.set_id_counts(counts)
    b.load_state_dict(a.state_dict())
    assert np.allclose(a.item_vectors(), b.item_vectors())
    with pytest.raises(ValueError, match="id_backoff"):
        ItemTower(N_ITEMS, DIM, content, id_backoff=-1.0)


@pytest.mark.parametrize("kind", sorted(USER_TOWERS))
def test_batched_user_vectors_equal_one_user_at_a_time(kind) -> None:
    # user_vectors pads each chunk to its longest history and sorts by length: the same vectors as
    # encoding each user alone, in the caller's order, for short, empty and over-long histories.
    from models.towers.config import TowerConfig

    content = np.random.default_rng(0).random((N_ITEMS, N_FEATURES)).astype(np.float32)
    model = TwoTower(TowerConfig(tower=kind, dim=DIM, max_len=12).tower_spec(N_ITEMS, N_FEATURES), content)
    rng = np.random.default_rng(1)
    histories = [rng.integers(0, N_ITEMS, n) for n in (3, 0, 20, 1, 7, 12, 2)]
    batched = model.user_vectors(histories, batch_size=3)
    alone = np.stack([model.user_tower.eval().encode(h) for h in histories])
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    assert np.all(batched[1] == 0)


@pytest.mark.parametrize("kind,extra", [(k, {}) for k in sorted(USER_TOWERS)]
                         + [("sasrec", {"n_layers": 3, "n_heads": 2}), ("gru", {"n_layers": 2})])
def test_serving_path_equals_the_training_forward(kind, extra) -> None:
    # encode_last takes right-padded histories and computes only the last event's output (SASRec:
    # a causal kernel without per-user masks, the last layer for one query): forward()[:, -1].
    from models.towers.user import _left_to_right

    tower = make_user_tower(kind, _item_tower(), max_len=12, dropout=0.3, **extra).eval()
    tokens = torch.tensor([[0, 0, 0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 9],
                           [0, 0, 11, 3, 3, 3, 2, 1]])
    lengths = (tokens != 0).sum(1)
    with torch.no_grad():
        expected = tower(tokens)
        right = _left_to_right(tower.item_tower(tokens), lengths)
        got = tower.encode_last(right, lengths)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    tower.train()  # in training mode the general path (dropout on) still runs
    assert tower.encode_last(right, lengths).shape == (4, DIM)


def test_a_frozen_model_serves_the_same_vectors_and_refuses_training() -> None:
    from models.towers.config import TowerConfig

    content = np.random.default_rng(0).random((N_ITEMS, N_FEATURES)).astype(np.float32)
    spec = {**TowerConfig(tower="sasrec", dim=DIM, max_len=12).tower_spec(N_ITEMS, N_FEATURES), "id_backoff": 2.0}
    model = TwoTower(spec, content)
    model.item_tower.set_id_counts(np.arange(N_ITEMS))
    histories = [np.random.default_rng(r).integers(0, N_ITEMS, n) for r, n in enumerate((4, 0, 15, 1))]
    before = model.user_vectors(histories)
    table = model.freeze()._item_table
    assert table is not None and table.shape == (N_ITEMS + 1, DIM) and torch.all(table[0] == 0)
    torch.testing.assert_close(table[1:], model.item_tower.all_items())
    np.testing.assert_allclose(model.user_vectors(histories), before, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match="frozen"):
        model.train()
    model.eval()  # eval stays allowed
