"""Hostile model-updates, short form (``make test``); the long form is ``python bench/chaos.py --only versions``.

Hostile records and version folders mixed with valid versions (bench/faults/versions.py): the
worker never crashes, applies every valid version, serves no hostile one, refuses each hostile
folder for its own reason, and a restarted worker serves the last valid version although the
newest announcements are bad.
"""

from __future__ import annotations

import pytest

from bench.faults import versions

pytestmark = pytest.mark.kafka


def test_hostile_model_updates_never_stop_serving(kafka_bootstrap, tmp_path):
    outcome = versions.versions_fuzz(kafka_bootstrap, tmp_path, records=600, rounds=3)
    print("\n" + outcome.explain())
    assert outcome.ok, outcome.explain()
    assert outcome.figures["crashes"] == 0 and outcome.figures["versions_applied"] == 3
    assert outcome.figures["folder_kinds_refused"] >= 5
