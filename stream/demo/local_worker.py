"""Run ``streamrec worker`` as a child process: for the demo, the benchmarks and the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stream.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use ``settings`` (secrets included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(value)
        elif hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"STREAMREC_{name.upper()}"] = str(value)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LocalWorker:
    """A ``streamrec worker`` child process, its log in a file, its HTTP API at :attr:`url`."""

    COMMAND = "worker"  # the streamrec command run; its /healthz answers 200 once it is ready

    def __init__(self, settings: Settings, log_path: Path, profile_to: Path | None = None, **env: str) -> None:
        self.settings = settings
        self.log_path = Path(log_path)
        self.profile_to = profile_to  # cProfile statistics written here when the worker exits cleanly
        self.env = settings_env(settings, **env)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.env['STREAMREC_WEB_PORT']}"

    def start(self, timeout: float = 120.0, poll: float = 0.3) -> LocalWorker:
        """Start the worker and wait until ``/healthz`` answers 200 (asked every ``poll`` seconds);
        raises with the log tail if it does not."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        profile = ["-m", "cProfile", "-o", str(self.profile_to)] if self.profile_to else []
        self.proc = subprocess.Popen([sys.executable, *profile, "-m", "stream.cli", self.COMMAND],
                                     env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.COMMAND} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(poll)
        raise TimeoutError(f"{self.COMMAND} not healthy within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Stop the worker (its whole process group) with ``sig``; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def get(self, path: str, auth: bool = True, body: bytes | None = None) -> tuple[int, Any]:
        """``(status, decoded JSON or text)`` of a GET on the worker's API (a POST of ``body`` when
        given), with the worker's ``STREAMREC_API_TOKEN`` as a bearer token when it has one (and ``auth``)."""
        request = urllib.request.Request(self.url + path, data=body,
                                         headers={"Content-Type": "application/json"} if body is not None else {})
        token = self.env.get("STREAMREC_API_TOKEN")
        if auth and token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                body, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (all label values) on ``/metrics``."""
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class LocalDashboard(LocalWorker):
    """A ``streamrec dashboard`` child process, reading ``settings.dashboard_workers``."""

    COMMAND = "dashboard"

    @property
    def url(self) -> str:
        return f"http://{self.settings.dashboard_host}:{self.env['STREAMREC_DASHBOARD_PORT']}"
