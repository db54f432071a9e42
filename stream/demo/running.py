"""What ``make demo`` leaves running: the worker and the dashboard, each recorded in a pid file,
so a rerun or ``make demo-stop`` (``streamrec demo --stop``) stops them cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PID_SUFFIX = ".pid"


def record(folder: Path, name: str, pid: int) -> Path:
    """Write ``pid`` (a process group leader: LocalWorker starts each in a session of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{PID_SUFFIX}"
    path.write_text(f"{pid}\n", encoding="ascii")
    return path


def _ours(pid: int) -> bool:
    """Whether ``pid`` is still a streamrec process (not a pid the system gave to another since)."""
    try:
        return b"stream.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _ours(pid)


def stop_recorded(folder: Path, timeout_s: float = 60.0) -> list[str]:
    """Stop every process recorded in ``folder`` (SIGTERM to its group, SIGKILL after ``timeout_s``)
    and remove the files; the names of those that were running."""
    stopped = []
    for path in sorted(folder.glob(f"*{PID_SUFFIX}")) if folder.is_dir() else []:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        pid = int(text) if text.isdigit() else 0
        if pid > 1 and _ours(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(f"{path.stem} (pid {pid})")
        path.unlink(missing_ok=True)
    return stopped
