"""What the scenarios, benchmarks and tests need of this machine: free loopback ports, the broker script."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def free_port() -> int:
    """A TCP port the OS says is free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
