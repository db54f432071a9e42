"""Temporal splits: leave-last-out (ties in source order, short users) and the global time split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.data.dataset import ItemCatalog, leave_last_out, time_split
from models.data.preprocess import RawData, preprocess


def _load(rows: list[tuple]):
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    inter, catalog, _ = preprocess(RawData(df, None, "t", timestamp_unit="s"))
    return inter, catalog


def _ext(inter, rows) -> list[tuple[str, str]]:
    return [(rows.users.ids[u], rows.items.ids[i]) for u, i in zip(rows.user, rows.item)]


def test_leave_last_out_ties_keep_source_order_and_short_users_stay_in_train() -> None:
    rows = [
        # user 1: items b and c share the last timestamp; c comes later in the file, so c is test.
        ("1", "a", 5, 10), ("1", "b", 5, 30), ("1", "c", 5, 30), ("1", "d", 5, 20),
        # user 2: exactly three interactions.
        ("2", "a", 5, 5), ("2", "b", 5, 6), ("2", "c", 5, 7),
        # user 3: two interactions, too short for evaluation.
        ("3", "a", 5, 1), ("3", "d", 5, 2),
    ]
    inter, catalog = _load(rows)
    split = leave_last_out(inter, catalog, name="t")
    assert _ext(inter, split.test) == [("2", "c"), ("1", "c")]
    assert _ext(inter, split.valid) == [("2", "b"), ("1", "b")]
    assert sorted(_ext(inter, split.train)) == [("1", "a"), ("1", "d"), ("2", "a"), ("3", "a"), ("3", "d")]
    assert len(split.train) + len(split.valid) + len(split.test) == len(inter)
    assert split.protocol["n_eval_users"] == 2 and split.name == "t"
    for part in (split.valid, split.test):
        assert len(np.unique(part.user)) == len(part)
    # Every test row is at or after every train / valid row of the same user.
    for u in np.unique(split.test.user):
        t_test = split.test.timestamp[split.test.user == u][0]
        assert split.train.timestamp[split.train.user == u].max() <= t_test


def test_leave_last_out_on_random_logs_matches_a_plain_python_rule() -> None:
    rng = np.random.default_rng(0)
    rows = [(str(rng.integers(20)), str(rng.integers(30)), 4, int(rng.integers(50))) for _ in range(300)]
    inter, catalog = _load(rows)
    split = leave_last_out(inter, catalog)
    per_user: dict[int, list[int]] = {}
    for r in range(len(inter)):
        per_user.setdefault(int(inter.user[r]), []).append(r)
    expected_test = {u: int(inter.item[r[-1]]) for u, r in per_user.items() if len(r) >= 3}
    expected_valid = {u: int(inter.item[r[-2]]) for u, r in per_user.items() if len(r) >= 3}
    assert dict(zip(split.test.user.tolist(), split.test.item.tolist())) == expected_test
    assert dict(zip(split.valid.user.tolist(), split.valid.item.tolist())) == expected_valid


def test_time_split_uses_global_cutoffs() -> None:
    rows = [(str(u), str(i), 5, 10 * i + u) for u in range(4) for i in range(10)]
    inter, catalog = _load(rows)
    split = time_split(inter, catalog, valid_frac=0.2, test_frac=0.2)
    t_valid, t_test = split.protocol["valid_cutoff_ms"], split.protocol["test_cutoff_ms"]
    assert split.train.timestamp.max() < t_valid <= t_test
    assert np.all((split.valid.timestamp >= t_valid) & (split.valid.timestamp < t_test))
    assert np.all(split.test.timestamp >= t_test)
    assert len(np.unique(split.test.user)) == len(split.test) == 4
    with pytest.raises(ValueError):
        time_split(inter, catalog, valid_frac=0.6, test_frac=0.5)


def test_catalog_length_is_checked() -> None:
    inter, catalog = _load([("1", "a", 5, 1)])
    with pytest.raises(Exception):
        ItemCatalog(inter.items, [], [], [])
