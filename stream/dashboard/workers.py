"""The workers' HTTP answers, as the dashboard reads them (with the API token, within a timeout)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from stream.dashboard.figures import Samples, parse_samples

TIMEOUT_S = 2.0  # a worker slower than this is reported as not answering


class WorkerDown(Exception):
    """No worker answered; ``failures`` maps each URL tried to why."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__("; ".join(f"worker {url} did not answer ({why})" for url, why in failures.items()))


@dataclass
class Scrape:
    """One worker's ``/metrics`` and ``/healthz`` at ``t`` (``error`` set when it did not answer)."""

    url: str
    t: float
    samples: Samples = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _why(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"no answer within {TIMEOUT_S:g} s"
    return f"{type(error).__name__}: {str(error)[:160]}"


class Workers:
    """An HTTP client of the workers at ``urls``; ``token`` is sent as ``Authorization: Bearer``."""

    def __init__(self, urls: tuple[str, ...], token: str | None) -> None:
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S), headers=self.headers)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _get(self, url: str, path: str) -> tuple[int, Any]:
        if self.session is None:
            raise RuntimeError("Workers.start() was not awaited")
        async with self.session.get(url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def get(self, path: str) -> tuple[str, int, Any]:
        """``(worker URL, status, JSON body)`` from the first worker that answers ``path`` (any worker
        routes a user's request to its owner); raises :class:`WorkerDown` when none does."""
        failures: dict[str, str] = {}
        for url in self.urls:
            try:
                status, body = await self._get(url, path)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                failures[url] = _why(e)
                continue
            if status >= 500 and status != 503:
                failures[url] = f"answered {status}"
                continue
            return url, status, body
        raise WorkerDown(failures)

    async def scrape(self, url: str) -> Scrape:
        """One worker's metrics and health; never raises (a failure is the scrape's ``error``)."""
        t = time.time()
        try:
            (metrics_status, text), (_, health) = await asyncio.gather(self._get(url, "/metrics"),
                                                                       self._get(url, "/healthz"))
            if metrics_status != 200:
                return Scrape(url, t, error=f"/metrics answered {metrics_status}")
            return Scrape(url, t, parse_samples(text), health if isinstance(health, dict) else {})
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            return Scrape(url, t, error=_why(e))

    async def scrape_all(self) -> list[Scrape]:
        return list(await asyncio.gather(*(self.scrape(url) for url in self.urls)))
