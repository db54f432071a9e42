"""Poison pills on every consumed topic from an outside client, two workers (bench/faults/poison.py)."""

from __future__ import annotations

import pytest

from bench.faults import poison

pytestmark = pytest.mark.kafka


def test_poison_pills_stop_no_worker_and_each_lands_in_dead_letter(kafka_bootstrap, tmp_path):
    outcome = poison.poison(kafka_bootstrap, tmp_path, items=400, announcements=40)
    print("\n" + outcome.explain())
    assert outcome.ok, outcome.explain()
    assert outcome.figures["items_refused"] > 100 and outcome.figures["items_applied"] > 50
    assert outcome.figures["trending_refused"] >= 10 and outcome.figures["refused_not_in_dead_letter"] == 0
