"""The session protocol (models.evaluate.session): exact figures on hand-made sessions, and on yoochoose-100k."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest

from models.base import Recommender, train_of
from models.baselines import MostPopular
from models.data.dataset import Interactions, ItemCatalog, Split
from models.data.loaders import YOOCHOOSE_FILES, default_data_dir
from models.evaluate.registry import make_model
from models.evaluate.session import (
    evaluate_sessions, format_session_table, run_session_report, session_split, target_ranks,
)

YOOCHOOSE = default_data_dir() / "yoochoose-100k"

# Items 10, 11, 12, 13 get indices 0..3. Training counts (one per session): 10: 3, 11: 2, 12: 1, 13: 1.
TRAIN = [(1, 10, 100.0), (1, 11, 101.0), (1, 12, 102.0), (1, 12, 103.0),  # the repeat of 12 is collapsed
         (2, 10, 110.0), (2, 11, 111.0), (3, 10, 120.0), (3, 13, 121.0)]
# Session 9 starts first; session 7 repeats 11; session 8 clicks an unknown item (99) and is left with one click.
TEST = [(7, 10, 300.0), (7, 11, 301.0), (7, 11, 302.0), (7, 13, 303.0),
        (8, 12, 310.0), (8, 99, 311.0), (9, 13, 200.0), (9, 10, 201.0)]


def write_yoochoose(folder: Path, train: list[tuple], test: list[tuple]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in (("train", train), ("test", test)):
        lines = ["SessionId\tItemId\tTime", *(f"{s}\t{i}\t{t}" for s, i, t in rows)]
        (folder / YOOCHOOSE_FILES[part]).write_text("\n".join(lines) + "\n")
    return folder


class _Stub(Recommender):
    """Counts training rows per item; remembers every history it is asked to score."""

    kind = "baseline"

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float32)
        self.seen: list[list[int]] = []

    def fit(self, split_or_train: Split | Interactions, catalog: ItemCatalog) -> _Stub:
        train = train_of(split_or_train)
        self.counts = np.bincount(train.item, minlength=train.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


class CountStub(_Stub):
    name = "count"

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        self.seen.extend(h.tolist() for h in histories)
        return np.tile(self.counts, (len(histories), 1))


class LastItemStub(_Stub):
    """Puts the session's last click first: it would hit every time if a history held its own target."""

    name = "last"

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        self.seen.extend(h.tolist() for h in histories)
        scores = np.zeros((len(histories), len(self.counts)), dtype=np.float32)
        scores[np.arange(len(histories)), [h[-1] for h in histories]] = 1.0
        return scores


class NoHistories(_Stub):
    name = "per_user_only"


class RaisesLate(_Stub):
    name = "raises"

    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError("raises: no session scoring after all")


def test_split_drops_unknown_items_then_short_sessions_and_orders_by_start(tmp_path) -> None:
    split = session_split(write_yoochoose(tmp_path / "tiny", TRAIN, TEST))
    assert split.train.n_users == 3 and split.n_items == 4 and len(split.train) == 7  # one repeat collapsed
    assert split.session_ids == ("9", "7")
    assert [s.tolist() for s in split.sessions] == [[3, 0], [0, 1, 1, 3]]  # the repeated click stays
    p = split.protocol
    assert (p["dropped_unknown_item_clicks"], p["n_unknown_items"], p["dropped_short_sessions"]) == (1, 1, 1)
    assert (p["n_test_sessions"], p["n_predictions"]) == (2, 4) and split.n_predictions == 4
    histories, targets, session, position = split.prefixes()
    assert [h.tolist() for h in histories] == [[3], [0], [0, 1], [0, 1, 1]]
    assert targets.tolist() == [0, 1, 1, 3] and session.tolist() == [0, 1, 1, 1]
    assert position.tolist() == [1, 1, 2, 3]
    assert session_split(tmp_path / "tiny", max_sessions=1).sessions[0].tolist() == [3, 0]
    assert (p["n_target_is_last_click"], p["n_target_in_session"]) == (1, 1)


def test_collapsing_consecutive_repeats_is_an_option(tmp_path) -> None:
    test = [*TEST, (5, 12, 400.0), (5, 12, 401.0)]  # nothing left of session 5 once collapsed
    split = session_split(write_yoochoose(tmp_path / "tiny", TRAIN, test), consecutive_repeats="collapse")
    assert [s.tolist() for s in split.sessions] == [[3, 0], [0, 1, 3]]
    assert split.protocol["collapsed_repeat_clicks"] == 2
    assert split.protocol["dropped_short_sessions_after_collapse"] == 1
    assert "collapsed" in split.protocol["repeats"] and split.protocol["n_target_is_last_click"] == 0


def test_popularity_figures_by_hand(tmp_path) -> None:
    split = session_split(write_yoochoose(tmp_path / "tiny", TRAIN, TEST))
    model = CountStub().fit(split.train, split.catalog)
    # Ranks by count, ties (12 and 13) by lower index: 10 -> 1, 11 -> 2, 12 -> 3, 13 -> 4.
    # Targets 10, 11, 11, 13: ranks 1, 2, 2, 4; nothing is excluded, not even items in the session.
    out = evaluate_sessions(model, split, ks=(1, 2, 20))
    assert out["n_predictions"] == 4
    assert out["hr@1"] == 0.25 and out["hr@2"] == 0.75 and out["hr@20"] == 1.0
    assert out["mrr@2"] == pytest.approx((1 + 0.5 + 0.5) / 4)
    assert out["mrr@20"] == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    assert out["ndcg@2"] == pytest.approx((1 + 2 / math.log2(3)) / 4)
    assert out["ndcg@20"] == pytest.approx((1 + 2 / math.log2(3) + 1 / math.log2(5)) / 4)


def test_prefixes_never_hold_their_own_target(tmp_path) -> None:
    split = session_split(write_yoochoose(tmp_path / "tiny", TRAIN, TEST))
    model = LastItemStub().fit(split.train, split.catalog)
    out = evaluate_sessions(model, split, ks=(1, 20), batch_size=3)  # two batches
    # Only the repeated click (11 after 11) is the last click before it; a leaked target would score 1.0.
    assert out["hr@1"] == 0.25
    assert model.seen == [[3], [0], [0, 1], [0, 1, 1]]
    for s in split.sessions:
        for t in range(1, len(s)):
            assert model.seen.count(s[:t].tolist()) >= 1 and len(s[:t]) == t


def test_models_without_score_histories_are_not_applicable(tmp_path) -> None:
    split = session_split(write_yoochoose(tmp_path / "tiny", TRAIN, TEST))
    report = run_session_report([], split, ks=(10,), progress=False, out_json=tmp_path / "s.json",
                                extra_models={"count": CountStub(), "per_user_only": NoHistories(),
                                              "raises": RaisesLate()})
    assert set(report["models"]) == {"count"} and set(report["not_applicable"]) == {"per_user_only", "raises"}
    assert "score_histories" in report["not_applicable"]["per_user_only"]["reason"]
    assert report["not_applicable"]["raises"]["reason"] == "raises: no session scoring after all"
    assert report["protocol"]["ks"] == [10, 20] and report["models"]["count"]["mrr@20"] == pytest.approx(0.5625)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["protocol"]["excluded"].startswith("nothing") and saved["models"]["count"]["hr@10"] == 1.0
    table = format_session_table(report)
    assert "| count | baseline |" in table and "not applicable: per_user_only" in table


def test_target_ranks_break_ties_by_index_and_put_nan_last() -> None:
    scores = np.array([[1.0, 1.0, 1.0, 0.0], [np.nan, 2.0, 1.0, 1.0]], dtype=np.float32)
    assert target_ranks(scores, np.array([2, 0])).tolist() == [3, 4]
    assert target_ranks(scores, np.array([3, 3])).tolist() == [4, 3]


@pytest.mark.skipif(not (YOOCHOOSE / YOOCHOOSE_FILES["test"]).exists(), reason="yoochoose-100k absent")
def test_pop_on_yoochoose_matches_a_direct_computation() -> None:
    split = session_split("yoochoose-100k")
    assert split.protocol["n_predictions"] == 13_568 - 3_416  # every click after a session's first
    assert split.protocol["dropped_unknown_item_clicks"] == 0
    model = make_model("pop")
    if not model.scores_histories:  # the registry's pop before it learnt to score sessions
        model = _PopHistories()
    report = run_session_report([], split, ks=(10, 20), progress=False, extra_models={"pop": model})
    got = report["models"]["pop"]

    # Directly: an item's count is the number of training sessions that clicked it (repeats collapsed).
    train = pd.read_csv(YOOCHOOSE / YOOCHOOSE_FILES["train"], sep="\t", dtype={"SessionId": str, "ItemId": str})
    test = pd.read_csv(YOOCHOOSE / YOOCHOOSE_FILES["test"], sep="\t", dtype={"SessionId": str, "ItemId": str})
    counts = train.drop_duplicates(["SessionId", "ItemId"])["ItemId"].value_counts()
    items = sorted(counts.index, key=int)
    order = sorted(items, key=lambda i: (-counts[i], int(i)))  # ties: lower index, i.e. lower id
    rank_of = {item: r + 1 for r, item in enumerate(order)}
    test = test.sort_values(["SessionId", "Time"], kind="stable")
    later = test["SessionId"].to_numpy()[1:] == test["SessionId"].to_numpy()[:-1]
    ranks = np.array([rank_of[i] for i in test["ItemId"].to_numpy()[1:][later]], dtype=np.float64)
    assert len(ranks) == 10_152
    for k in (10, 20):
        assert got[f"hr@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-6)
        assert got[f"mrr@{k}"] == pytest.approx(np.mean(np.where(ranks <= k, 1 / ranks, 0)), abs=1e-6)
        assert got[f"ndcg@{k}"] == pytest.approx(np.mean(np.where(ranks <= k, 1 / np.log2(ranks + 1), 0)),
                                                 abs=1e-6)


class _PopHistories(MostPopular):
    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.score(np.zeros(len(histories), dtype=np.int64))
