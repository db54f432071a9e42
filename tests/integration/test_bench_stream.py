"""Short forms of the streaming benchmarks, so the scripts keep working (figures are not asserted)."""

import json

import pytest

pytestmark = pytest.mark.kafka


def test_stream_throughput_short(kafka_bootstrap, tmp_path):
    from bench.stream_throughput import main

    out = tmp_path / "throughput.json"
    assert main(["--bootstrap", kafka_bootstrap, "--events", "3000", "--partitions", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["events"] == 3000
    assert result["streamrec_events_per_s"] > 0 and result["bare_consumer_events_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["streamrec_events_per_s"] / result["bare_consumer_events_per_s"],
                                            rel=2e-2)
    assert result["faust_noop_agent_events_per_s"] > 0


def test_stream_logic_short(tmp_path):
    from bench.stream_logic import main

    out = tmp_path / "logic.json"
    assert main(["--events", "600", "--batches", "1,50", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 50] and all(r["events_per_s"] > 0 for r in rows)


def test_freshness_short(kafka_bootstrap, tmp_path):
    from bench.freshness import main

    out = tmp_path / "freshness.json"
    assert main(["--bootstrap", kafka_bootstrap, "--rate", "100", "--seconds", "3", "--partitions", "4",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rate"] == 100 and result["recommendations"] > 0
    assert 0 <= result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
