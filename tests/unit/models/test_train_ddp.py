"""DistributedDataParallel on 2 CPU processes (gloo): it trains, ranks stay in sync, quality matches 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMON = ["--dataset", "demo", "--demo-users", "200", "--demo-items", "100", "--dim", "16",
          "--max-len", "20", "--no-progress", "--log-level", "WARNING", "--content", "tfidf"]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_ddp_two_processes_train_in_sync(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    proc = _run(["-m", "models.train.ddp", "--nproc", "2", "--", *COMMON, "--tower", "gru", "--epochs", "2",
                 "--metrics-out", str(out), "--out", str(tmp_path / "art"), "--version", "v1"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_in_sync"] is True
    assert (tmp_path / "art" / "v1" / "manifest.json").is_file()


@pytest.mark.slow
def test_ddp_quality_matches_single_process(tmp_path: Path) -> None:
    args = [*COMMON, "--tower", "mean", "--epochs", "15", "--patience", "15", "--lr", "0.003"]
    single, double = tmp_path / "one.json", tmp_path / "two.json"
    p1 = _run(["-m", "models.train.cli", *args, "--metrics-out", str(single)], timeout=600)
    p2 = _run(["-m", "models.train.ddp", "--nproc", "2", "--", *args, "--metrics-out", str(double)], timeout=600)
    assert p1.returncode == 0 and p2.returncode == 0, (p1.stderr[-2000:], p2.stderr[-2000:])
    one = json.loads(single.read_text())["valid"]["ndcg@10"]
    two = json.loads(double.read_text())["valid"]["ndcg@10"]
    # 200 validation users: the standard error of NDCG@10 is about 0.03.
    assert abs(one - two) < 0.06, (one, two)
