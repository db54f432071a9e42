"""Importing the app module, or running ``streamrec settings``, does none of the worker's start-up:
no Worker, no Faust patch, no thread-pool limit, no data folder. ``streamrec worker`` does all four
(stream.runtime.app.prepare_worker). Each probe runs in a fresh interpreter: these are process-wide."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import WORKER_THREAD_ENV

REPO = Path(__file__).resolve().parents[3]

# What a probe reports after its step: is Faust's commit check patched, was the worker module
# (which every Worker needs) imported, the thread-pool variables, the pools' thread counts.
REPORT = """
import json, os, sys
from faust.transport.consumer import Consumer
import numpy  # loads its BLAS pool, sized by the environment as the probe found it
from threadpoolctl import threadpool_info
print(json.dumps({
    "patched": Consumer._new_offset.__module__ != "faust.transport.consumer",
    "worker_module": "stream.runtime.worker" in sys.modules,
    "env": sorted(k for k in %r if k in os.environ),
    "max_threads": max(p["num_threads"] for p in threadpool_info()),
}))
""" % (sorted(WORKER_THREAD_ENV),)

IMPORT_APP = "import stream.runtime.app\n" + REPORT

SETTINGS_COMMAND = """
import sys
sys.argv = ["streamrec", "settings"]
from stream.cli import main
try:
    main()
except SystemExit as e:
    if e.code:
        raise
""" + REPORT

WORKER_PATH = """
import sys
sys.argv = ["streamrec", "worker"]
from stream.runtime.app import app, prepare_worker
worker = prepare_worker(app)
""" + REPORT


def probe(code: str, data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WORKER_THREAD_ENV}
    env["STREAMREC_DATA_DIR"] = str(data_dir)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def several_cores() -> bool:
    return (os.cpu_count() or 1) > 1


@pytest.mark.parametrize("code", [IMPORT_APP, SETTINGS_COMMAND], ids=["import stream.runtime.app", "streamrec settings"])
def test_no_worker_start_up_at_import_or_for_other_commands(code, tmp_path):
    data_dir = tmp_path / "data"
    found = probe(code, data_dir)
    assert not found["patched"]  # faust.transport.consumer.Consumer._new_offset is Faust's own
    assert not found["worker_module"]  # so no Worker was built
    assert found["env"] == []  # no OMP_NUM_THREADS & co set
    if several_cores():
        assert found["max_threads"] > 1  # the BLAS pool keeps its default size
    assert not data_dir.exists()


def test_the_worker_command_path_does_the_start_up(tmp_path):
    data_dir = tmp_path / "data"
    found = probe(WORKER_PATH, data_dir)
    assert found["patched"] and found["worker_module"]
    assert found["max_threads"] == 1
    assert data_dir.is_dir()
