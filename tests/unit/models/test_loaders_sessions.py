"""Loaders of the e-commerce data sets (skipped when absent); counts from their READMEs."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.dataset import leave_last_out, load_dataset
from models.data.loaders import default_data_dir, load_raw, load_taobao, load_yoochoose
from models.data.preprocess import preprocess

DATA = default_data_dir()
YOOCHOOSE = DATA / "yoochoose-100k"
TAOBAO = DATA / "taobao-userbehavior-sample"


@pytest.mark.skipif(not (YOOCHOOSE / "yoochoose-clicks-100k_test.txt").exists(), reason="yoochoose-100k absent")
def test_yoochoose_parts_match_the_readme() -> None:
    train, test = load_yoochoose(YOOCHOOSE, "train"), load_yoochoose(YOOCHOOSE, "test")
    assert len(train.events) == 70_278 and len(test.events) == 13_568
    assert train.events["user"].nunique() == 17_794 and test.events["user"].nunique() == 3_416
    assert set(test.events["item"]) <= set(train.events["item"])  # every test item is in train
    assert (train.events["type"] == "click").all() and train.items is None
    # The split is by time: test sessions start after the training ones do.
    assert train.events["timestamp"].min() < test.events["timestamp"].min()
    both = load_raw("yoochoose-100k")
    assert len(both.events) == 70_278 + 13_568
    inter, _catalog, report = preprocess(both)
    # Only repeated clicks go: one exact duplicate row and the re-clicks of an item within a session.
    assert inter.n_items == 2_933 and report.dropped == {"duplicate": 1, "repeated_pair": 22_358}
    # Sub-second times survive (Time is seconds with a fraction).
    assert (inter.timestamp % 1000 != 0).any()


@pytest.mark.skipif(not (TAOBAO / "UserBehavior-head.csv").exists(), reason="taobao sample absent")
def test_taobao_behaviours_map_to_event_types() -> None:
    raw = load_taobao(TAOBAO)
    assert len(raw.events) == 84_475
    assert raw.events["type"].value_counts().to_dict() == {"click": 75_872, "cart": 4_497, "like": 2_356,
                                                           "purchase": 1_750}
    inter, catalog = load_dataset("taobao")
    assert inter.n_users == 815 and inter.n_items == 55_368
    # Repeated views of an item collapse to one row carrying the pair's strongest weight (a purchase: 4).
    assert set(np.unique(inter.weight)) <= {1.0, 2.0, 3.0, 4.0} and (inter.weight == 4.0).any()
    # The category is the item's tag: the only content the data has.
    assert all(len(t) == 1 and t[0].startswith("cat") for t in catalog.tags)
    assert len({t[0] for t in catalog.tags}) == 2_914
    split = leave_last_out(inter, catalog)
    assert len(split.test) == 815


def test_taobao_unknown_behaviour_is_counted_not_trained_on(tmp_path) -> None:
    (tmp_path / "UserBehavior-head.csv").write_text(
        "1,10,5,pv,1511544070\n1,11,5,buy,1511544080\n1,12,6,zap,1511544090\n2,10,5,fav,1511544100\n")
    inter, _catalog, report = preprocess(load_raw(tmp_path))
    assert report.dropped == {"unknown_event_type": 1}
    assert sorted(inter.weight.tolist()) == [1.0, 2.0, 4.0]


def test_the_data_sets_folder_is_not_the_workers_state_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STREAMREC_DATASETS_DIR", raising=False)
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path / "state"))  # Settings.data_dir: RocksDB tables
    assert default_data_dir() != tmp_path / "state"
    monkeypatch.setenv("STREAMREC_DATASETS_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
