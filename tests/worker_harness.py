"""Running a real ``streamrec worker`` process in tests, and reading what it publishes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from stream.reader import read_range
from stream.settings import Settings

STREAMREC = Path(sys.executable).parent / "streamrec"


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a subprocess use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"STREAMREC_{name.upper()}"] = str(value.get_secret_value() if hasattr(value, "get_secret_value")
                                                 else value)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """A ``streamrec worker`` subprocess with its log in a file."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.settings = settings
        self.log_path = log_path
        self.env = settings_env(settings, **env)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['STREAMREC_WEB_PORT']}"

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(STREAMREC), "worker", "--loglevel", "info"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.get("/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"worker not healthy within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def topic_json(settings: Settings, topic: str) -> list[tuple[bytes | None, Any]]:
    """Every record of a topic as (key, decoded JSON value)."""
    return [(r.key, json.loads(r.value)) for r in asyncio.run(read_range(settings, settings.topic(topic)))
            if r.value is not None]


def recommendations_for(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """Every recommendation published for ``user_id``, oldest first."""
    return [v for k, v in topic_json(settings, "recommendations") if k == user_id.encode()]
