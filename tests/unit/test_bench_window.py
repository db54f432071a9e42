"""The throughput benchmark's measured window (bench._stream_common.measure_drain), on a scripted worker."""

import os
from types import SimpleNamespace

import pytest

from bench._stream_common import RunTooShort, measure_drain


class ScriptedWorker:
    """Answers each scrape of a counter with the next value of its script (the last one repeats)."""

    def __init__(self, **scripts):
        self.scripts = {f"streamrec_worker_events_{name}_total": list(values) for name, values in scripts.items()}
        self.proc = SimpleNamespace(pid=os.getpid())

    def metric(self, name):
        script = self.scripts[name]
        return script.pop(0) if len(script) > 1 else script[0]


def test_the_window_counts_only_the_events_consumed_after_it_opened():
    worker = ScriptedWorker(consumed=[0, 0, 400, 900, 1500, 2000], applied=[1200, 2000])
    drain = measure_drain(worker, 2000, timeout=10)
    assert drain.events == 1600  # 400 were consumed before the first scrape that saw any
    assert drain.seconds > 0 and drain.rate == pytest.approx(1600 / drain.seconds)
    assert drain.cpu_seconds >= 0 and drain.rss_bytes > 0


def test_a_topic_drained_before_the_first_look_is_refused_not_measured():
    worker = ScriptedWorker(consumed=[0, 3000], applied=[3000])
    with pytest.raises(RunTooShort, match="all 3,000 events"):
        measure_drain(worker, 3000, timeout=10)


def test_a_worker_that_never_consumes_times_out():
    with pytest.raises(TimeoutError, match="still 0"):
        measure_drain(ScriptedWorker(consumed=[0], applied=[0]), 10, timeout=0.1)
