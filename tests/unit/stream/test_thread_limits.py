"""The worker's numeric libraries run one thread each: idle BLAS threads spin and take a core."""

import os
import subprocess
import sys

import pytest

from stream.cli import WORKER_THREAD_ENV, limit_worker_threads

PROBE = """
from threadpoolctl import threadpool_info
import numpy, faiss, torch  # every pool a worker loads
before = max(p["num_threads"] for p in threadpool_info())
from stream.runtime.worker import limit_thread_pools
limit_thread_pools()
print(before, max(p["num_threads"] for p in threadpool_info()))
"""


def test_worker_command_defaults_the_pools_to_one_thread():
    environ = {"OMP_NUM_THREADS": "3"}
    limit_worker_threads(["streamrec", "worker", "-l", "info"], environ)
    assert environ == {**WORKER_THREAD_ENV, "OMP_NUM_THREADS": "3"}  # an explicit setting wins
    other = {}
    limit_worker_threads(["streamrec", "train"], other)
    assert other == {}  # the trainer keeps every core


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool has one thread anyway")
def test_limit_thread_pools_sets_every_loaded_pool_to_one_thread():
    env = {k: v for k, v in os.environ.items() if k not in WORKER_THREAD_ENV}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                         check=True).stdout.split()
    before, after = int(out[-2]), int(out[-1])
    assert before > 1 and after == 1
