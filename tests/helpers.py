"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
DATA_DIR = Path(os.environ.get("STREAMREC_DATA_DIR", REPO.parent / "shared" / "data"))


def free_port() -> int:
    """A TCP port the OS says is free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
