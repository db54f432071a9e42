"""A worker registers with any batch size the settings accept (they take 1 to 100,000)."""

from __future__ import annotations

import pytest

from stream.runtime.app import create_app, register_worker
from stream.settings import Settings


@pytest.mark.parametrize("batch_max_events", [1, 15, 63, 2000])
def test_a_worker_registers_with_any_accepted_batch_size(tmp_path, batch_max_events):
    settings = Settings(data_dir=tmp_path, batch_max_events=batch_max_events)
    worker = register_worker(create_app(settings), settings)
    for pacer in (worker.pacer, worker.apply_pacer):
        assert 1 <= pacer.size() <= batch_max_events
