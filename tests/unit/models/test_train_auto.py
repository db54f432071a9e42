"""The automatic choice: rules from the data's shape, candidates judged on validation only, the time budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models.train.recommender  # noqa: F401  (registers "auto" and the towers)
from models.data.dataset import IdMap, Interactions, ItemCatalog, Split, leave_last_out
from models.evaluate import ranking
from models.evaluate.registry import make_model
from models.evaluate.report import run_report
from models.train import auto
from models.train.config import TrainConfig
from models.train.demo import demo_split
from models.train.loop import train_two_tower

FAST = TrainConfig(dim=16, epochs=2, patience=1, progress=False, lr=5e-3)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def split() -> Split:
    return demo_split(n_users=120, n_items=60)


def sessions(n_sessions: int, length: int, n_items: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_sessions), length)
    item = rng.integers(0, n_items, len(user))
    ts = np.arange(len(user), dtype=np.int64) * 1000
    items = IdMap(tuple(f"i{i}" for i in range(n_items)))
    inter = Interactions(user.astype(np.int64), item.astype(np.int64), ts, np.ones(len(user), np.float32),
                         IdMap(tuple(f"s{u}" for u in range(n_sessions))), items)
    catalog = ItemCatalog(items, list(items.ids), [""] * n_items, [[] for _ in range(n_items)])
    return leave_last_out(inter, catalog)


def test_rules_follow_the_shape_of_the_data(split) -> None:
    short = auto.data_settings(sessions(400, 4, 50))
    assert short["max_len"] == auto.MIN_HISTORY  # sessions of 4 need no history of 50
    assert short["loss"] == "full_softmax"
    # Two training positions per session window: far more windows per step than on long histories.
    assert short["batch_size"] == min(auto.MAX_BATCH, round(auto.POSITIONS_PER_STEP / 1))
    long = auto.data_settings(sessions(20, 200, 50))
    assert long["max_len"] == 50 and long["batch_size"] == auto.MIN_BATCH
    big = auto.data_settings(sessions(30, 5, auto.FULL_SOFTMAX_MAX_ITEMS + 1))
    assert big["loss"] == "sampled_softmax"  # log-Q corrected in-batch softmax above the cut-off


def test_content_stage_only_where_items_are_described(split) -> None:
    assert auto.has_content(split.catalog)
    assert not auto.has_content(sessions(10, 4, 20).catalog)


def test_the_winner_is_the_best_candidate_on_validation_and_test_is_never_read(split, monkeypatch) -> None:
    real = ranking.evaluate

    def no_test(model, s, on="test", **kw):
        assert on == "valid", "the selection looked at the test split"
        return real(model, s, on=on, **kw)

    monkeypatch.setattr(auto, "evaluate", no_test)
    trained, selection, baseline = auto.select_two_tower(split, FAST, time_budget_s=600,
                                                         baselines=("pop", "itemknn"))
    names = [c.name for c in selection.candidates]
    # the demo has item text: every tower with ids and content (id back-off), the mean tower content first
    assert names == [f"{t}+tfidf" for t in auto.AUTO_TOWERS] + ["mean+tfidf-first"]
    backoff = {c.name: c.config.id_backoff for c in selection.candidates}
    assert backoff["sasrec+tfidf"] == auto.CONTENT_ID_BACKOFF
    assert backoff["mean+tfidf-first"] == auto.CONTENT_FIRST_BACKOFF
    scores = {c.name: c.valid["ndcg@10"] for c in selection.candidates}
    assert selection.winner == max(scores, key=scores.__getitem__)
    assert trained.config.tower == selection.winner_candidate.config.tower
    # The winner's model is the one trained: its own validation figure comes back.
    assert trained.metrics["valid"]["ndcg@10"] == pytest.approx(scores[selection.winner])
    assert set(selection.baselines) == {"pop", "itemknn"} and baseline is not None
    assert baseline.name == selection.best_baseline
    d = selection.as_dict()
    assert d["winner"] == selection.winner and d["best_baseline_valid"] == round(max(selection.baselines.values()), 6)


def test_a_failed_candidate_does_not_end_the_selection(split, monkeypatch) -> None:
    def flaky(s, config, init=None, resume=None):
        if config.tower == "sasrec":
            raise RuntimeError("out of memory")
        return train_two_tower(s, config, init=init, resume=resume)

    monkeypatch.setattr("models.train.loop.train_two_tower", flaky)
    _, selection, _ = auto.select_two_tower(split, FAST, towers=("mean", "sasrec"), baselines=())
    failed = [c for c in selection.candidates if c.error]
    assert [c.name for c in failed] == ["sasrec+tfidf"] and "out of memory" in failed[0].error
    assert selection.winner.startswith("mean") and selection.best_baseline is None


def test_the_budget_stops_training_and_keeps_the_best_epoch(split) -> None:
    slow = TrainConfig(dim=16, epochs=500, patience=500, progress=False, time_budget_s=1.0)
    trained = train_two_tower(split, slow)
    assert trained.metrics["out_of_time"] and trained.metrics["epochs_run"] < 500
    assert trained.metrics["valid"]["ndcg@10"] == max(h["ndcg@10"] for h in trained.metrics["history"])
    _, selection, _ = auto.select_two_tower(split, slow, time_budget_s=3.0, towers=("mean", "gru"), baselines=())
    assert all(c.out_of_time for c in selection.candidates if c.error is None)
    assert selection.seconds < 60  # a budget of 3 s, not 500 epochs


def test_auto_in_the_report_says_what_it_chose(split, tmp_path) -> None:
    model = make_model("auto", time_budget_s=120, dim=16, epochs=2, patience=1, baselines=("pop",))
    report = run_report("demo", [], extra_models={"auto": model}, split=split, ks=(10,), progress=False)
    row = report["models"]["auto"]
    assert row["kind"] == "two_tower" and 0 <= row["ndcg@10"] <= 1
    assert row["selection"]["winner"] in {c["name"] for c in row["selection"]["candidates"]}
    # scoring unseen sessions works like scoring a user with the same history
    users = np.array([0, 1])
    known = model.trained.histories  # train + valid, folded in by the report
    assert np.allclose(model.score_histories([known[0], known[1]]), model.score(users), atol=1e-5)


def test_sessions_without_content_try_every_tower_with_ids_only() -> None:
    plan = auto.candidate_plan(sessions(60, 5, 20), FAST)
    assert [name for name, _ in plan] == list(auto.AUTO_TOWERS)
    assert all(c.content == "none" and c.max_len == auto.MIN_HISTORY for _, c in plan)


def test_successive_halving_gives_the_better_half_more_time(split) -> None:
    slow = TrainConfig(dim=16, epochs=500, patience=500, progress=False)
    _, selection, _ = auto.select_two_tower(split, slow, time_budget_s=12.0, towers=("mean", "sasrec", "gru", "cnn"),
                                            baselines=())
    assert selection.rules["rounds"] == auto.halving_rounds(5) == 4
    by_rounds = sorted(c.rounds for c in selection.candidates)
    assert by_rounds == [1, 1, 2, 3, 4]  # 5 -> 3 -> 2 -> 1
    winner = selection.winner_candidate
    assert winner.rounds == 4 and winner.score == max(c.score for c in selection.candidates)
    # each round's survivors were the better half of the round before
    after_first = [c for c in selection.candidates if c.rounds >= 2]
    dropped = [c for c in selection.candidates if c.rounds == 1]
    assert min(c.score for c in after_first) >= max(c.score for c in dropped)  # best epochs only go up
    assert winner.train_s > max(c.train_s for c in dropped)  # the winner trained the longest
    assert selection.seconds < 40


def test_a_paused_run_resumes_where_it_stopped(split) -> None:
    paused = train_two_tower(split, TrainConfig(dim=16, epochs=500, patience=500, progress=False, time_budget_s=1.0))
    point = paused.checkpoint
    assert point is not None and point.next_epoch == paused.metrics["epochs_run"]
    resumed = train_two_tower(split, TrainConfig(dim=16, epochs=500, patience=500, progress=False,
                                                 time_budget_s=1.0), resume=point)
    epochs = [h["epoch"] for h in resumed.metrics["history"]]
    assert epochs == list(range(len(epochs))) and len(epochs) > point.next_epoch  # numbering goes on
    assert resumed.metrics["steps"] > point.step  # the step count (and Adam's state) carried over
    first_new = resumed.metrics["history"][point.next_epoch]
    # it starts from the paused weights, not from scratch: its first epoch is as good as where it stopped
    assert first_new["ndcg@10"] >= 0.8 * paused.metrics["history"][-1]["ndcg@10"]
    assert resumed.metrics["valid"]["ndcg@10"] >= paused.metrics["valid"]["ndcg@10"]
    fresh = train_two_tower(split, TrainConfig(dim=16, epochs=1, progress=False))
    assert first_new["ndcg@10"] > fresh.metrics["history"][0]["ndcg@10"]
