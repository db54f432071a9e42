"""bench/chaos.py's command line (its scenarios' short forms run in test_faults.py)."""

import pytest

from bench.chaos import SCENARIOS, main, table


def test_help_and_unknown_scenario(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["--only", "nope"])
    assert done.value.code == 2


def test_table_has_a_row_per_scenario():
    rows = [{"scenario": "crash", "kills": 3, "lost": 0, "ok": True}, {"scenario": "http", "ok": False}]
    lines = table(rows).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| crash |") and lines[3].endswith("| NO |")
    assert {"crash", "crash-eos", "broker", "rebalance", "bad-input", "artifacts", "disk", "http", "poison"} <= set(SCENARIOS)
