"""Short form of bench/trainer_scale.py, so the script keeps working (figures are not asserted)."""

import json

import pytest

pytestmark = pytest.mark.kafka


def test_trainer_scale_quick_with_a_window_and_a_reuse(kafka_bootstrap, tmp_path):
    from bench.trainer_scale import QUICK_EVENTS, main

    out = tmp_path / "scale.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--partitions", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["events_in_topic"] == QUICK_EVENTS and [r["path"] for r in result["rows"]] == ["columns",
                                                                                                "dicts (before)"]
    columns, dicts = result["rows"]
    assert columns["events_read"] == dicts["events_read"] == QUICK_EVENTS
    assert columns["interactions"] == dicts["interactions"] > 0  # the same cleaning either way
    assert result["peak_rss_bytes"] == columns["peak_rss_bytes"] > columns["import_rss_bytes"] > 0
    assert result["events_per_s"] > 0 and result["snapshot_seconds"] > 0

    again = tmp_path / "window.json"
    assert main(["--bootstrap", kafka_bootstrap, "--quick", "--partitions", "4", "--window", "5000",
                 "--reuse", result["topic_prefix"], "--no-baseline", "--parquet", "--catalog", "300",
                 "--out", str(again)]) == 0
    windowed = json.loads(again.read_text())
    assert windowed["produce_events_per_s"] is None and windowed["events_in_topic"] == QUICK_EVENTS
    assert [r["path"] for r in windowed["rows"]] == ["columns", "parquet write", "parquet cache read"]
    assert [r["events_read"] for r in windowed["rows"]] == [5000] * 3
    assert windowed["rows"][0]["interactions"] == windowed["rows"][2]["interactions"] > 0  # the cache holds the same
    assert [(r["path"], r["events_read"]) for r in windowed["catalog_rows"]] == [("catalog columns", 300)]
