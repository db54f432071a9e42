"""Short forms of the streaming benchmarks, so the scripts keep working (figures are not asserted)."""

import json

import pytest

pytestmark = pytest.mark.kafka


def test_stream_throughput_short(kafka_bootstrap, tmp_path):
    from bench.stream_throughput import main

    out = tmp_path / "throughput.json"
    assert main(["--bootstrap", kafka_bootstrap, "--events", "20000", "--partitions", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["events"] == 20000 and 0 < result["measured_events"] < 20000
    assert result["streamrec_events_per_s"] > 0 and result["bare_consumer_events_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["streamrec_events_per_s"] / result["bare_consumer_events_per_s"],
                                            rel=2e-2)
    assert result["faust_noop_agent_events_per_s"] > 0
    assert result["model"] == "content" and result["model_version"] == "content-v0" and result["index"] == "flat"
    assert result["items"] == 2000 and result["served_items"] == 2000
    assert 0 < result["worker_cpu_us_per_event"] < 1e6 and result["worker_rss_bytes"] > 50 * 2 ** 20


def test_stream_throughput_with_a_trained_model_outgrowing_a_flat_index(kafka_bootstrap, tmp_path, monkeypatch):
    # The trainer's own run publishes a version; the worker serves it over a catalogue larger than the
    # version's items (at most the 3,000 events' items: a flat index), at the index kind chosen for the
    # catalogue's size (flat up to 3,000 items here, so HNSW for 6,000).
    from bench.stream_throughput import main

    monkeypatch.setenv("STREAMREC_INDEX_AUTO_FLAT_MAX", "3000")
    out = tmp_path / "throughput.json"
    assert main(["--bootstrap", kafka_bootstrap, "--events", "3000", "--partitions", "4", "--model", "trained",
                 "--items", "6000", "--train-steps", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "trained" and result["model_version"] != "content-v0"
    assert result["served_items"] == 6000 and result["index"] == "hnsw"
    assert result["worker_cpu_us_per_event"] > 0 and result["streamrec_events_per_s"] > 0


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
    assert result["model"] == "content" and result["worker_cpu_us_per_event"] > 0 and result["worker_rss_bytes"] > 0


def test_worker_memory_quick(kafka_bootstrap, tmp_path):
    from bench.worker_memory import main

    out = tmp_path / "memory.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--partitions", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["users"] == 5000 and result["items"] == 5000
    assert result["worker_peak_rss_bytes"] >= result["worker_rss_bytes"] > 50 * 2 ** 20


def test_http_latency_quick(kafka_bootstrap, tmp_path):
    from bench.http_latency import main

    out = tmp_path / "http.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--users", "300", "--partitions", "4",
                 "--request-rate", "100", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rate"] == 1000 and result["requests"] == 300
    assert result["answered_200"] == 300 and result["statuses"] == {"200": 300}  # every user has one
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_idle_cost_quick(kafka_bootstrap, tmp_path):
    from bench.idle_cost import main

    out = tmp_path / "idle.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--waits", "50", "--partitions", "2",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["fetch_max_wait_ms"] for r in result["runs"]] == [50]
    assert result["runs"][0]["idle_cpu_percent"] > 0 and result["runs"][0]["worker_rss_bytes"] > 50 * 2 ** 20


def test_similar_users_quick(kafka_bootstrap, tmp_path):
    from bench.similar_users import main

    out = tmp_path / "similar_users.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--partitions", "4", "--items", "300",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["one_worker"]["workers"] == 1 and result["two_workers"]["workers"] == 2
    assert result["two_workers"]["answered_200"] > 0 and result["two_workers"]["partial"] == 0
    # The scatter-gather answers what one worker holding everyone answers.
    assert result["same_answers"] + result["differing_only_in_tied_order"] == result["requests"]
