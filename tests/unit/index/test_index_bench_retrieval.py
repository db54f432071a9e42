"""A tiny run of bench/retrieval.py, so the script keeps working."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench" / "retrieval.py"
ROW_KEYS = {"n", "index", "build_s", "qps_single", "qps_batch", "recall_at_100", "speedup_vs_flat"}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_retrieval", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--quick" in out.stdout and "--device" in out.stdout and "--out" in out.stdout


def test_quick_form_writes_the_table_and_json(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "retrieval.json"
    argv = [
        "--quick", "--sizes", "3000", "--batch", "64", "--single-queries", "5", "--min-seconds", "0",
        "--set", "pq_m=16", "--set", "pq_nbits=6", "--set", "hnsw_ef_search=128", "--out", str(out),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 3,000 | flat | cpu |" in printed and "ivfpq" in printed
    result = json.loads(out.read_text())
    assert {"cpu", "cpu_count", "faiss"} <= set(result["machine"])
    rows = {row["index"]: row for row in result["rows"]}
    assert set(rows) == {"flat", "hnsw", "ivf", "ivfpq"}
    assert all(ROW_KEYS <= set(row) for row in rows.values())
    assert rows["flat"]["recall_at_100"] == 1.0 and rows["flat"]["speedup_vs_flat"] == 1.0
    assert rows["hnsw"]["recall_at_100"] >= 0.95 and rows["ivf"]["recall_at_100"] >= 0.95


def test_gpu_request_without_gpu_runs_cpu_rows(bench: ModuleType) -> None:
    result = bench.run_bench([1000], kinds=["ivf"], device="gpu", batch=16, single_queries=2, min_seconds=0.0)
    assert [(r["index"], r["device"]) for r in result["rows"]] == [("flat", "cpu"), ("ivf", "cpu")]


def test_bad_override_is_refused(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--set", "colour=blue"])
