"""A quick run of bench/quality.py and of the streaming replay, so neither rots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.data.dataset import load_dataset
from models.data.loaders import default_data_dir
from models.evaluate.report import run_report
from models.evaluate.streaming import OnlineItemKNN, format_windows, replay

REPO = Path(__file__).resolve().parents[3]


def test_help() -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "quality.py"), "--help"],
                         capture_output=True, text=True, check=True)
    assert "--quick" in out.stdout and "--models" in out.stdout
    assert "yoochoose-100k" in out.stdout and "taobao" in out.stdout and "--no-session-protocol" in out.stdout


def _quality():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import quality
    finally:
        sys.path.pop(0)
    return quality


@pytest.mark.skipif(not (default_data_dir() / "ml-100k" / "u.data").exists(), reason="ml-100k absent")
def test_quick_bench_on_a_slice(tmp_path) -> None:
    quality = _quality()
    out = tmp_path / "q.json"
    res = quality.run(data=["ml-100k"], models=["pop", "itemknn"], out=out, quick=True)
    saved = json.loads(out.read_text())
    report = saved["reports"]["ml-100k"]
    assert set(report["models"]) == {"pop", "itemknn"}
    for m in report["models"].values():
        assert {"kind", "ndcg@10", "hr@10", "recall@10", "mrr@10", "coverage", "train_s", "ndcg@50"} <= set(m)
    assert report["protocol"]["n_test_users"] == quality.QUICK_USERS
    assert (tmp_path / "q-ml-100k.png").stat().st_size > 0
    assert res["streaming"]["protocol"]["scored_events"] > 0
    assert saved["sessions"] == {}  # ml-100k has no benchmark session split


@pytest.mark.skipif(not (default_data_dir() / "yoochoose-100k" / "yoochoose-clicks-100k_test.txt").exists(),
                    reason="yoochoose-100k absent")
def test_quick_bench_on_yoochoose_has_both_tables(tmp_path, capsys) -> None:
    quality = _quality()
    out = tmp_path / "q.json"
    quality.run(data=["yoochoose-100k", str(tmp_path / "no-such-data")], models=["pop", "itemknn"], out=out,
                quick=True, streaming=False)
    saved = json.loads(out.read_text())
    assert set(saved["reports"]["yoochoose-100k"]["models"]) == {"pop", "itemknn"}
    sessions = saved["sessions"]["yoochoose-100k"]
    assert set(sessions["models"]) | set(sessions["not_applicable"]) == {"pop", "itemknn"}
    assert "pop" in sessions["models"], "pop scores sessions"
    assert {"hr@20", "mrr@20", "ndcg@20", "train_s"} <= set(sessions["models"]["pop"])
    assert sessions["protocol"]["n_test_sessions"] == quality.QUICK_SESSIONS
    assert 0 < sessions["models"]["pop"]["mrr@20"] <= sessions["models"]["pop"]["hr@20"] < 1
    assert list(saved["skipped"]) == [str(tmp_path / "no-such-data")]
    printed = capsys.readouterr().out
    assert "session protocol" in printed and "skipped, no folder" in printed


def test_quick_options_keep_only_what_a_factory_accepts() -> None:
    quality = _quality()
    opts = quality.quick_options(["pop", "als", "two_tower_mean"])
    assert opts["pop"] == {} and opts["als"] == {"iterations": 3}
    assert opts["two_tower_mean"] == {"epochs": 2, "patience": 1}


def test_run_report_on_demo_data(tmp_path) -> None:
    from models.evaluate.report import load_split

    split = load_split("demo", n_users=60, n_items=48, events_per_user=10)
    report = run_report("demo", ["pop", "itemknn"], tmp_path / "r.json", None, ks=(5, 10), split=split,
                        progress=False)
    assert json.loads((tmp_path / "r.json").read_text())["models"]["itemknn"]["kind"] == "baseline"
    assert report["protocol"]["split"] == "leave_last_out"


def test_streaming_replay_counts_hits_before_learning() -> None:
    # Two users repeat the same three-item pattern: the online model learns a -> b -> c.
    model = OnlineItemKNN(n_items=4, window=2)
    assert model.recommend(0, 2, exclude=set()).tolist() == [0, 1]  # no data: index order
    for item in (0, 1, 2):
        model.update(0, item, 1.0)
    model.update(1, 0, 1.0)
    model.update(1, 3, -1.0)  # a skip teaches nothing
    assert model.recommend(1, 1, exclude={0}).tolist() == [1]
    inter, catalog = load_dataset("demo", n_users=40, n_items=24, events_per_user=12)
    res = replay(inter, catalog, n_windows=3, progress=False)
    assert len(res["windows"]) == 3 and sum(w["events"] for w in res["windows"]) == res["protocol"]["scored_events"]
    assert 0 <= res["online"]["hr@10"] <= 1 and 0 <= res["batch"]["ndcg@10"] <= res["batch"]["hr@10"]
    assert "| all |" in format_windows(res)
    assert np.isfinite(res["online"]["ndcg@10"])


def test_frozen_itemknn_reads_a_sparse_similarity_like_a_dense_one() -> None:
    from models.baselines.knn import ItemKNN
    from models.data.dataset import IdMap, Interactions
    from models.evaluate.streaming import FrozenItemKNN

    rng = np.random.default_rng(1)
    n = 400
    train = Interactions(rng.integers(0, 30, n), rng.integers(0, 40, n), np.arange(n, dtype=np.int64),
                         np.ones(n, np.float32), IdMap(tuple(map(str, range(30)))), IdMap(tuple(map(str, range(40)))))
    dense = FrozenItemKNN(ItemKNN().fit(train, None), train)
    sparse = FrozenItemKNN(ItemKNN(max_dense_bytes=1).fit(train, None), train)
    import scipy.sparse as sp

    assert sp.issparse(sparse._sim) and not sp.issparse(dense._sim)
    for model in (dense, sparse):
        for item in (3, 7, 11):
            model.update(0, item, 1.0)
    assert dense.recommend(0, 10, {3, 7, 11}).tolist() == sparse.recommend(0, 10, {3, 7, 11}).tolist()
