"""The dashboard's aiohttp application and :func:`serve`, what ``streamrec dashboard`` runs.

Pages: ``/`` (overview), ``/users/{id}``, ``/items/{id}``, ``/models``, ``/dead-letters``
(``/users?id=`` and ``/items?id=`` redirect to them). Their data: ``/api/overview``,
``/api/users/{id}`` (and ``/api/users/{id}/stream``: server-sent events, one per new
recommendation record of the user), ``/api/items/{id}``, ``/api/models``,
``/api/dead-letters``. A bad id is a 400, an unknown one a 404, and a worker that does not
answer a 502 that names it; nothing answers a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from stream.core.codec import check_id
from stream.core.topics import DEAD_LETTER
from stream.dashboard import auth, figures
from stream.dashboard.pages import SECURITY_HEADERS, error_page, page_response
from stream.dashboard.topics import TopicViews
from stream.dashboard.workers import Scrape, WorkerDown, Workers
from stream.errors import InvalidRecord
from stream.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HISTORY_POINTS = 1800  # of the overview's charts: an hour at the default 2 s
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream


class BadId(Exception):
    """An id in the path is not one (answered with 400)."""


def parse_id(name: str, value: str) -> str:
    try:
        return check_id(name, value)
    except InvalidRecord as e:
        raise BadId(e.detail) from e


TITLES_CACHED = 10_000  # item titles kept between page loads


class Dashboard:
    """The state behind the pages: the workers' last scrapes, the charts' points, the topics' views."""

    def __init__(self, settings: Settings, workers: Workers | None = None, topics: TopicViews | None = None) -> None:
        self.settings = settings
        token = settings.api_token.get_secret_value() if settings.api_token is not None else None
        self.token = token.encode() if token else None
        self.workers = workers or Workers(settings.dashboard_workers, token)
        self.topics = topics or TopicViews(settings)
        self.scrapes: list[Scrape] = []
        self.history: deque[figures.Point] = deque(maxlen=HISTORY_POINTS)
        self._scrape_lock = asyncio.Lock()
        self._titles: OrderedDict[str, str | None] = OrderedDict()  # item id -> title, the latest looked up

    # --- scraping -------------------------------------------------------------------
    async def scrape(self) -> list[Scrape]:
        """Read every worker now, and add a point to the charts."""
        async with self._scrape_lock:
            before = self.scrapes
            after = await self.workers.scrape_all()
            if before:
                old = {s.url: {n: figures.total(s.samples, n) for n in figures.COUNTERS} for s in before if not s.error}
                new = {s.url: {n: figures.total(s.samples, n) for n in figures.COUNTERS} for s in after if not s.error}
                t = max(s.t for s in after)
                self.history.append(figures.interval(old, new, t - max(s.t for s in before), t))
            self.scrapes = after
            return after

    async def scrape_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.scrape()
            except Exception:  # one bad read must not end the charts
                log.exception("dashboard scrape failed")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.dashboard_scrape_interval_s)
            except asyncio.TimeoutError:
                pass

    # --- the pages' data --------------------------------------------------------------
    async def overview(self) -> dict[str, Any]:
        scrapes = self.scrapes or await self.scrape()
        answered = [s for s in scrapes if not s.error]
        summary = figures.overview([s.samples for s in answered])
        last = self.history[-1] if self.history else None
        return {
            **summary.to_dict(),
            "events_consumed": summary.counters[figures.EVENTS],
            "events_applied": summary.counters[figures.APPLIED],
            "recommendations_published": summary.counters[figures.RECOMMENDATIONS],
            "events_per_s": last.events_per_s if last else None,
            "recommendations_per_s": last.recommendations_per_s if last else None,
            "workers": [self._worker_row(s) for s in scrapes],
            "workers_answered": len(answered),
            "history": [p.to_list() for p in self.history],
            "recent_users": self.recent_users(),
            "scraped_ms": int(max((s.t for s in scrapes), default=time.time()) * 1000),
        }

    @staticmethod
    def _worker_row(scrape: Scrape) -> dict[str, Any]:
        if scrape.error:
            return {"url": scrape.url, "ok": False, "error": scrape.error}
        return {"url": scrape.url, "ok": True, "status": scrape.health.get("status"),
                "partitions": scrape.health.get("partitions", []), **figures.served_versions(scrape.samples),
                "index_kind": scrape.health.get("index_kind"),
                "index_items": figures.total(scrape.samples, figures.INDEX_ITEMS),
                "users": figures.total(scrape.samples, figures.TABLE_KEYS),
                "events_consumed": figures.total(scrape.samples, figures.EVENTS)}

    def recent_users(self) -> list[dict[str, Any]]:
        return [{"user_id": u, "published_ms": t} for u, t in reversed(self.topics.recent_users.items())]

    async def user(self, user_id: str) -> tuple[int, dict[str, Any]]:
        path = quote(user_id, safe="")
        url, status, state = await self.workers.get(f"/users/{path}")
        if status != 200:
            return status, state if isinstance(state, dict) else {"error": str(state)[:200], "status": status}
        (_, rec_status, recs), (_, similar_status, similar) = await asyncio.gather(
            self.workers.get(f"/recommendations/{path}"), self.workers.get(f"/users/{path}/similar?k=5"))
        if rec_status == 200 and isinstance(recs, dict):
            await self._add_titles(recs.get("items"))
        return 200, {"worker": url, "user": state,
                     "recommendation": recs if rec_status == 200 else None,
                     "recommendation_error": None if rec_status == 200 else _message(recs, rec_status),
                     "similar": similar if similar_status == 200 else None,
                     "similar_error": None if similar_status == 200 else _message(similar, similar_status)}

    async def item(self, item_id: str) -> tuple[int, dict[str, Any]]:
        path = quote(item_id, safe="")
        url, status, record = await self.workers.get(f"/items/{path}")
        if status != 200:
            return status, record if isinstance(record, dict) else {"error": str(record)[:200], "status": status}
        _, similar_status, similar = await self.workers.get(f"/items/{path}/similar?k=10")
        if similar_status == 200 and isinstance(similar, dict):
            await self._add_titles(similar.get("items"))
        return 200, {"worker": url, **record, "counts": self.topics.item_counts(item_id),
                     "similar": similar if similar_status == 200 else None,
                     "similar_error": None if similar_status == 200 else _message(similar, similar_status)}

    async def _add_titles(self, items: Any) -> None:
        """Give each ``{"item_id": ...}`` of a worker's answer the catalogue's title (the answers
        carry ids only), from a bounded cache or ``GET /items/{id}``."""
        if not isinstance(items, list):
            return
        wanted = [it for it in items if isinstance(it, dict) and isinstance(it.get("item_id"), str)]
        missing = list(dict.fromkeys(it["item_id"] for it in wanted if it["item_id"] not in self._titles))

        async def title_of(item_id: str) -> None:
            _, status, record = await self.workers.get(f"/items/{quote(item_id, safe='')}")
            item = record.get("item") if status == 200 and isinstance(record, dict) else None
            title = item.get("title") if isinstance(item, dict) else None
            if status in (200, 404):  # a worker that did not answer is asked again next time
                self._titles[item_id] = title if isinstance(title, str) else None

        await asyncio.gather(*(title_of(i) for i in missing), return_exceptions=True)
        while len(self._titles) > TITLES_CACHED:
            self._titles.popitem(last=False)
        for it in wanted:
            it["title"] = self._titles.get(it["item_id"])

    async def models(self) -> dict[str, Any]:
        scrapes = self.scrapes or await self.scrape()
        serving = [{"url": s.url, **figures.served_versions(s.samples)} for s in scrapes if not s.error]
        try:
            url, status, experiments = await self.workers.get("/experiments")
            experiments_error = None if status == 200 else _message(experiments, status)
        except WorkerDown as e:
            experiments, experiments_error = None, str(e)
        trainer = await self.workers.scrape(self.settings.trainer_url)
        runs = {labels.get("result", "?"): value for labels, value in
                trainer.samples.get("streamrec_trainer_runs_total", ())} if not trainer.error else None
        return {"versions": [u for u in self.topics.updates if u["kind"] == "version"],
                "experiment_records": [u for u in self.topics.updates if u["kind"] == "experiment"],
                "serving": serving, "experiments": experiments if experiments_error is None else None,
                "experiments_error": experiments_error, "trainer_url": self.settings.trainer_url,
                "trainer_runs": runs, "trainer_error": trainer.error}

    def dead_letters(self) -> dict[str, Any]:
        answered = [s.samples for s in self.scrapes if not s.error]
        return {"dead_letters": list(reversed(self.topics.dead_letters)),
                "by_reason": figures.overview(answered).dead_letters,
                "read": self.topics.read.get(DEAD_LETTER, 0)}


def _message(body: Any, status: int) -> str:
    return str(body.get("error")) if isinstance(body, dict) and "error" in body else f"answered {status}"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def create_app(dashboard: Dashboard) -> web.Application:
    """The aiohttp application of ``dashboard`` (its background reads are :func:`serve`'s)."""

    @web.middleware
    async def answers(request: web.Request, handler) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        try:
            response = await handler(request)
        except BadId as e:
            response = json_response({"error": str(e), "status": 400}, 400) if api else \
                error_page(400, "Bad request", str(e))
        except WorkerDown as e:
            response = json_response({"error": str(e), "status": 502, "workers": e.failures}, 502) if api else \
                error_page(502, "A worker did not answer", str(e))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = json_response({"error": e.reason, "status": e.status}, e.status) if api else \
                error_page(e.status, e.reason, f"{request.path} is not a page of this dashboard"
                           if e.status == 404 else e.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("dashboard request failed path=%s", request.path)
            response = json_response({"error": "internal error (logged)", "status": 500}, 500) if api else \
                error_page(500, "Internal error", "the error is in the dashboard's log")
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    app = web.Application(middlewares=[answers, auth.access_middleware(dashboard.token)])
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @routes.post("/login")
    async def login(request: web.Request) -> web.StreamResponse:
        return await auth.login(request, dashboard.token)

    @routes.get("/")
    async def overview_page(request: web.Request) -> web.Response:
        return page_response("Overview", "overview")

    @routes.get("/models")
    async def models_page(request: web.Request) -> web.Response:
        return page_response("Models", "models")

    @routes.get("/dead-letters")
    async def dead_letters_page(request: web.Request) -> web.Response:
        return page_response("Dead letters", "dead-letters")

    def search(kind: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            if request.query.get("id"):
                raise web.HTTPSeeOther(f"/{kind}s/{quote(request.query['id'].strip(), safe='')}")
            return page_response(f"{kind.capitalize()}s", f"{kind}s")
        return handler

    routes.get("/users")(search("user"))
    routes.get("/items")(search("item"))

    def entity_page(kind: str):
        """A user's or an item's page: 400 for a bad id, 404 when no worker knows it."""
        async def handler(request: web.Request) -> web.Response:
            ident = parse_id(f"{kind} id", request.match_info["ident"])
            _, status, body = await dashboard.workers.get(f"/{kind}s/{quote(ident, safe='')}")
            if status == 404:
                return error_page(404, f"Unknown {kind}", _message(body, 404))
            return page_response(f"{kind.capitalize()} {ident}", kind, ident)
        return handler

    routes.get("/users/{ident}")(entity_page("user"))
    routes.get("/items/{ident}")(entity_page("item"))

    @routes.get("/api/overview")
    async def overview(request: web.Request) -> web.Response:
        return json_response(await dashboard.overview())

    @routes.get("/api/users")
    async def recent_users(request: web.Request) -> web.Response:
        return json_response({"users": dashboard.recent_users()})

    def entity_data(kind: str, lookup):
        async def handler(request: web.Request) -> web.Response:
            status, body = await lookup(parse_id(f"{kind} id", request.match_info["ident"]))
            return json_response(body, status)
        return handler

    routes.get("/api/users/{ident}")(entity_data("user", dashboard.user))
    routes.get("/api/items/{ident}")(entity_data("item", dashboard.item))

    @routes.get("/api/users/{user_id}/stream")
    async def user_stream(request: web.Request) -> web.StreamResponse:
        user_id = parse_id("user id", request.match_info["user_id"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS})
        queue = dashboard.topics.watch(user_id)
        try:
            await response.prepare(request)
            await response.write(b": watching\n\n")
            while True:
                try:
                    record = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                await response.write(b"event: recommendation\ndata: " + orjson.dumps(record) + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away
        finally:
            dashboard.topics.unwatch(user_id, queue)
        return response

    @routes.get("/api/models")
    async def models(request: web.Request) -> web.Response:
        return json_response(await dashboard.models())

    @routes.get("/api/dead-letters")
    async def dead_letters(request: web.Request) -> web.Response:
        return json_response(dashboard.dead_letters())

    app.add_routes(routes)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    return app


async def serve(settings: Settings, ready: Any = None) -> None:
    """Run the dashboard until SIGTERM or SIGINT: the pages on ``dashboard_host:dashboard_port``,
    the workers read every ``dashboard_scrape_interval_s``, the topics followed. ``ready`` (a
    callable) is called with the URL once it listens."""
    dashboard = Dashboard(settings)
    await dashboard.workers.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(dashboard), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.dashboard_host, settings.dashboard_port).start()
        if ready is not None:
            ready(f"http://{settings.dashboard_host}:{settings.dashboard_port}")
        tasks = [asyncio.create_task(dashboard.scrape_forever(stop)), asyncio.create_task(dashboard.topics.run(stop))]
        await stop.wait()
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
    finally:
        await runner.cleanup()
        await dashboard.workers.close()
