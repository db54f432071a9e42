"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

# The fault scenarios in bench/faults need these too, and bench never imports tests.
from bench.faults.local import KAFKA_SH, REPO, free_port  # noqa: F401  (re-exported for tests)

DATA_DIR = Path(os.environ.get("STREAMREC_DATASETS_DIR", REPO.parent / "shared" / "data"))
