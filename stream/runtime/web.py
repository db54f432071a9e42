"""HTTP API served by each worker (Faust web views).

``GET /recommendations/{user_id}?k=&category=&exclude=``  the user's recommendation (routed to the worker owning the user)
``GET /items/{item_id}/similar?k=&category=&exclude=``    nearest items (e-commerce "similar items")
``GET /items/trending?k=&category=&exclude=``  the items trending over all workers' events (cold start)
``GET /users/{user_id}/similar?k=``    users with the nearest embeddings over every worker (social: friend suggestions)
``GET /users/{user_id}``               the user's recent history, counts and model version (routed like the first)
``GET /items/{item_id}``               the item's catalogue record
``POST /users/nearest``                this worker's users nearest to a vector (what the one above merges)
``GET /experiments``                   experiments and their per-arm results over all workers
``POST /events``                       events in (one JSON object or an array): 202 with what was accepted
``GET /healthz``                       200 when the catalogue and a model are loaded, else 503
``GET /metrics``                       Prometheus exposition
``GET /openapi.json``                  this API as an OpenAPI 3.1 document (stream/runtime/openapi.py)

Filters, applied inside retrieval so ``k`` results come back whenever ``k`` items match:
``category=C`` keeps the items of one catalogue category (a category no live item has is a
400 that says so); ``exclude=i1,i2`` leaves those ids out (at most ``MAX_EXCLUDE``; ids not in
the catalogue change nothing).

``POST /events`` takes up to ``MAX_INGEST_EVENTS`` events in a body of at most
``MAX_INGEST_BYTES``: each is validated by the producer client's rules
(:func:`stream.core.events.parse_event`), and the valid ones are written to ``events``, keyed
by user, with ``acks=all`` before the answer: ``202 {"accepted": n, "rejected": [{"index",
"reason", "detail"}]}``; 400 when the body is not JSON or holds no event, 413 when too large,
503 when the broker wrote none.

Errors are JSON ``{"error": ..., "status": ...}``: 400 for a bad parameter, 404 for an unknown id
or path, 401 without the API token.

With ``STREAMREC_API_TOKEN`` set, every request but ``/healthz`` (and ``/metrics`` with
``STREAMREC_METRICS_PUBLIC``) needs ``Authorization: Bearer <token>``: :func:`api_middlewares`,
an aiohttp middleware in front of every route, Faust's own included. A request that
``@app.table_route`` forwards to the worker owning the user keeps its headers (Faust's
``Router._route_req`` sends ``request.headers`` on), so the owner checks the same token.
Faust's ``/table`` and ``/router`` views are off (``stream.runtime.app.create_app``).
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web as aiohttp_web

from stream.core.codec import check_id
from stream.errors import InvalidRecord

if TYPE_CHECKING:
    import faust
    from aiokafka.errors import KafkaError
    from faust.web import Request, Response, View

    from stream.runtime.worker import Worker
    from stream.settings import Settings

OPEN_PATHS = frozenset({"/healthz"})  # answered without the token: the orchestrator's probe
METRICS_PATH = "/metrics"
Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> aiohttp_web.Response:
    """The API's error answer, ``{"error": message, "status": status}``."""
    return aiohttp_web.json_response({"error": message, "status": status}, status=status, headers=headers)


def bearer_matches(header: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time."""
    if header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Bytes: compare_digest refuses non-ASCII str, and a header may hold anything.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token)


def api_middlewares(settings: Settings) -> list[Callable[..., Any]]:
    """The aiohttp middlewares of the worker's web server (``web_application_options``).

    One middleware: with ``settings.api_token``, a request without the token is answered 401
    (``WWW-Authenticate: Bearer``) before any route runs, so an unknown path says nothing
    either; aiohttp's own errors (404 for a path no view serves, 405) become the API's JSON.
    """
    secret = settings.api_token
    token = secret.get_secret_value().encode() if secret is not None else None
    open_paths = OPEN_PATHS | ({METRICS_PATH} if settings.metrics_public else frozenset())

    @aiohttp_web.middleware
    async def guard(request: aiohttp_web.Request, handler: Handler) -> aiohttp_web.StreamResponse:
        if token is not None and request.path not in open_paths \
                and not bearer_matches(request.headers.get("Authorization"), token):
            return json_error(401, "this API needs a bearer token (Authorization: Bearer <token>)",
                              headers={"WWW-Authenticate": 'Bearer realm="streamrec"'})
        try:
            return await handler(request)
        except aiohttp_web.HTTPException as e:
            if e.status < 400:
                raise
            return json_error(e.status, e.reason.lower())

    return [guard]


class BadRequest(Exception):
    """A request parameter is invalid (answered with 400)."""


def parse_k(request: Request, default: int, maximum: int) -> int:
    """The ``k`` query parameter: an integer in [1, maximum]; raises :class:`BadRequest`."""
    raw = request.query.get("k")
    if raw is None:
        return default
    # isascii(): str.isdigit() also accepts '²' or '①', which int() rejects.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise BadRequest(f"k must be an integer between 1 and {maximum}")
    k = int(raw)
    if not 1 <= k <= maximum:
        raise BadRequest(f"k must be an integer between 1 and {maximum}")
    return k


def parse_id(name: str, value: str) -> str:
    try:
        return check_id(name, value)
    except InvalidRecord as e:
        raise BadRequest(e.detail) from e


MAX_EXCLUDE = 1_000  # ids in one ``exclude`` parameter
MAX_INGEST_EVENTS = 1_000  # events in one POST /events
MAX_INGEST_BYTES = 1024 * 1024  # its body (aiohttp's own client_max_size is the same 1 MiB)


def parse_event_batch(body: bytes) -> tuple[list[Any], list[dict[str, Any]]]:
    """``POST /events``' body: (the valid events with their index in the body, the rejected ones
    as ``{"index", "reason", "detail"}``); raises :class:`BadRequest` for a body that is not
    one event object or an array of them."""
    import orjson

    from stream.core.events import parse_event
    from stream.errors import InvalidEvent

    try:
        data = orjson.loads(body)  # orjson bounds nesting depth itself: no recursion to exhaust
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not JSON: {str(e)[:120]}") from e
    events = data if isinstance(data, list) else [data]
    if not events:
        raise BadRequest("the body holds no event")
    if len(events) > MAX_INGEST_EVENTS:
        raise BadRequest(f"at most {MAX_INGEST_EVENTS} events per request, got {len(events)}")
    valid, rejected = [], []
    for index, raw in enumerate(events):
        try:
            # Encoded again so each event gets every check a record on the topic gets, its size included.
            valid.append((index, parse_event(orjson.dumps(raw) if isinstance(raw, dict) else b"[]")))
        except InvalidEvent as e:
            rejected.append({"index": index, "reason": e.reason, "detail": e.detail[:200]})
        except TypeError as e:  # what orjson cannot write back (integers past 64 bits)
            rejected.append({"index": index, "reason": "wrong_type", "detail": str(e)[:200]})
    return valid, rejected



MAX_NEAREST_BYTES = 64 * 1024  # POST /users/nearest: a vector of up to MAX_VECTOR_DIM numbers and a few ids
MAX_VECTOR_DIM = 2048


def parse_nearest(body: bytes, max_k: int) -> tuple[Any, int, list[str], str | None]:
    """``POST /users/nearest``' body ``{"vector": [...], "k": K, "exclude": [ids], "model_version": V}``:
    (the vector as float32, k, the ids left out, the version whose users are searched, ``None``: the
    served one); raises :class:`BadRequest`."""
    import numpy as np
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not JSON: {str(e)[:120]}") from e
    if not isinstance(data, dict):
        raise BadRequest("the body must be an object with vector, k and exclude")
    vector = data.get("vector")
    if not (isinstance(vector, list) and 0 < len(vector) <= MAX_VECTOR_DIM
            and all(type(v) in (int, float) and abs(v) < 1e30 for v in vector)):  # NaN, inf: False
        raise BadRequest(f"vector must be a list of 1 to {MAX_VECTOR_DIM} finite numbers")
    k = data.get("k", 10)
    if type(k) is not int or not 1 <= k <= max_k:
        raise BadRequest(f"k must be an integer between 1 and {max_k}")
    exclude = data.get("exclude", [])
    if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE:
        raise BadRequest(f"exclude must be a list of at most {MAX_EXCLUDE} user ids")
    version = data.get("model_version")
    if version is not None:
        from stream.core.announcements import check_version

        try:
            check_version(version)
        except InvalidRecord as e:
            raise BadRequest(f"model_version: {e.detail}") from e
    return np.asarray(vector, dtype=np.float32), k, [parse_id("exclude", u) for u in exclude], version


def parse_filters(request: Request, model: Any) -> tuple[Any, list[str]]:
    """The ``category`` and ``exclude`` query parameters: (the allowed item positions or ``None``,
    the ids to leave out); raises :class:`BadRequest`."""
    allowed = None
    category = request.query.get("category")
    if category is not None:
        category = parse_id("category", category)
        allowed = model.in_category(category)
        if not allowed.size:
            raise BadRequest(f"category {category!r} is not in the catalogue")
    raw = request.query.get("exclude")
    exclude: list[str] = []
    if raw:
        parts = raw.split(",")
        if len(parts) > MAX_EXCLUDE:
            raise BadRequest(f"exclude takes at most {MAX_EXCLUDE} item ids, got {len(parts)}")
        exclude = [parse_id("exclude", p) for p in parts if p]
    return allowed, exclude


def register_views(app: faust.App, worker: Worker) -> None:
    """Add the API's pages to ``app``."""
    # Here, not at the top: create_app imports this module for api_middlewares, and these
    # (NumPy, SciPy, Prometheus) are the worker's, not every command's.
    from aiokafka.errors import KafkaError
    from faust.web import Request, Response, View

    from stream.exposition import metrics_response
    from stream.runtime import metrics

    settings = worker.settings

    def error(view: View, status: int, message: str) -> Response:
        return view.json({"error": message, "status": status}, status=status)

    def model_or_503(view: View):
        model = worker.holder.current
        if model is None:
            raise _Unavailable()
        return model

    class _Unavailable(Exception):
        pass

    async def answer(view: View, handler: Any, request: Request, **kwargs: Any) -> Response:
        """Run a view's handler, turning bad parameters into 400 and a missing model into 503."""
        try:
            return await handler(request, **kwargs)
        except BadRequest as e:
            return error(view, 400, str(e))
        except _Unavailable:
            return error(view, 503, "no catalogue or model loaded yet")
        except InvalidRecord as e:  # a stored state that another client wrote to the changelog
            return error(view, 503, f"the user's stored state is unreadable ({e.reason}); "
                                    "it is rebuilt at the user's next event")

    @app.page("/recommendations/{user_id}")
    class Recommendations(View):
        @app.table_route(table=worker.user_state, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            return await answer(self, self._get, request, user_id=user_id)

        async def _get(self, request: Request, user_id: str) -> Response:
            user_id = parse_id("user_id", user_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model_or_503(self)
            model, arm = worker.holder.serving.model_for(user_id)  # the user's arm during an experiment
            allowed, exclude = parse_filters(request, model)
            state = worker.state_of(user_id)
            if state is None:
                return error(self, 404, f"unknown user {user_id!r}")
            [recommendation], _ = worker.processor.recommend(model, [user_id], [state], k, int(time.time() * 1000),
                                                             allowed=allowed, exclude_items=exclude)
            recommendation.arm = arm
            return self.json({**recommendation.to_dict(), "history_length": len(state.history)})

    @app.page("/items/{item_id}/similar")
    class SimilarItems(View):
        async def get(self, request: Request, item_id: str) -> Response:
            return await answer(self, self._get, request, item_id=item_id)

        async def _get(self, request: Request, item_id: str) -> Response:
            item_id = parse_id("item_id", item_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model = model_or_503(self)
            allowed, exclude = parse_filters(request, model)
            if not model.has_item(item_id):
                return error(self, 404, f"unknown item {item_id!r}")
            similar = model.similar_items(item_id, k, exclude, allowed)
            return self.json({
                "item_id": item_id,
                "items": [{"item_id": i, "score": round(s, 6), "title": model.titles.get(i)} for i, s in similar],
                "model_version": model.model_version,
                "index_version": model.index_version,
            })

    @app.page("/items/trending")
    class TrendingItems(View):
        async def get(self, request: Request) -> Response:
            return await answer(self, self._get, request)

        async def _get(self, request: Request) -> Response:
            k = parse_k(request, settings.top_k, settings.max_k)
            model = model_or_503(self)
            allowed, exclude = parse_filters(request, model)
            keep = None
            if allowed is not None:
                in_filter, positions = set(allowed.tolist()), model.positions
                keep = lambda item: positions.get(item, -1) in in_filter  # noqa: E731
            found = worker.trending.top(k, set(exclude), keep=keep)
            return self.json({"items": [{"item_id": i, "score": round(s, 6), "title": model.titles.get(i)}
                                        for i, s in found],
                              "half_life_s": worker.trending.half_life_s})

    @app.page("/items/{item_id}")  # after /items/trending: aiohttp matches in the order routes were added
    class Item(View):
        async def get(self, request: Request, item_id: str) -> Response:
            return await answer(self, self._get, request, item_id=item_id)

        async def _get(self, request: Request, item_id: str) -> Response:
            import orjson

            item_id = parse_id("item_id", item_id)
            raw = worker.catalog.get(item_id)
            if raw is None:
                return error(self, 404, f"unknown item {item_id!r}")
            model = worker.holder.current
            return self.json({"item_id": item_id, "item": orjson.loads(raw),
                              "in_index": bool(model is not None and model.has_item(item_id))})

    @app.page("/users/{user_id}")
    class User(View):
        @app.table_route(table=worker.user_state, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            return await answer(self, self._get, request, user_id=user_id)

        async def _get(self, request: Request, user_id: str) -> Response:
            user_id = parse_id("user_id", user_id)
            state = worker.state_of(user_id)
            if state is None:
                return error(self, 404, f"unknown user {user_id!r}")
            history = [{"item_id": h[0], "event_type": h[1], "timestamp_ms": h[2], "weight": h[3]}
                       for h in reversed(state.history)]
            return self.json({"user_id": user_id, "history": history, "counts": state.counts,
                              "model_version": state.model_version, "last_recommended": state.last_recs,
                              "has_embedding": state.embedding is not None})

    @app.page("/users/{user_id}/similar")
    class SimilarUsers(View):
        @app.table_route(table=worker.user_state, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            return await answer(self, self._get, request, user_id=user_id)

        async def _get(self, request: Request, user_id: str) -> Response:
            user_id = parse_id("user_id", user_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model_or_503(self)
            if worker.state_of(user_id) is None:
                return error(self, 404, f"unknown user {user_id!r}")
            similar = await worker.similar_users(user_id, k, request.headers.get("Authorization"))
            if similar is None:
                return error(self, 404, f"user {user_id!r} has no embedding yet")
            return self.json({"user_id": user_id,
                              "users": [{"user_id": u, "score": round(s, 6)} for u, s in similar.users],
                              "workers": similar.workers, "partial": bool(similar.missing)})

    @app.page("/users/nearest")
    class NearestUsers(View):
        async def post(self, request: Request) -> Response:
            return await answer(self, self._post, request)

        async def _post(self, request: Request) -> Response:
            try:
                body = await request.read()
            except aiohttp_web.HTTPRequestEntityTooLarge:
                return error(self, 413, f"the body may hold at most {MAX_NEAREST_BYTES} bytes")
            if len(body) > MAX_NEAREST_BYTES:
                return error(self, 413, f"the body may hold at most {MAX_NEAREST_BYTES} bytes")
            vector, k, exclude, version = parse_nearest(body, settings.max_k)
            if version is None:
                version = model_or_503(self).model_version
            return self.json({"users": [{"user_id": u, "score": round(s, 6)}
                                        for u, s in worker.users.nearest(version, vector, k, exclude)],
                              "model_version": version})

    @app.page("/events")
    class Events(View):
        async def post(self, request: Request) -> Response:
            try:
                body = await request.read()  # bounded by aiohttp's client_max_size (1 MiB)
            except aiohttp_web.HTTPRequestEntityTooLarge:
                return error(self, 413, f"the body may hold at most {MAX_INGEST_BYTES} bytes")
            if len(body) > MAX_INGEST_BYTES:
                return error(self, 413, f"the body may hold at most {MAX_INGEST_BYTES} bytes")
            try:
                valid, rejected = parse_event_batch(body)
            except BadRequest as e:
                return error(self, 400, str(e))
            metrics.HTTP_EVENTS.labels("rejected").inc(len(rejected))
            if not valid:
                return self.json({"accepted": 0, "rejected": rejected}, status=202)
            try:
                results = await worker.send_events([e for _, e in valid])
            except Exception as e:  # the producer refused the sends: nothing was accepted
                return error(self, 503, f"events not written to Kafka: {str(e)[:200]}")
            accepted = 0
            for (index, _), result in zip(valid, results):
                if isinstance(result, BaseException):
                    rejected.append({"index": index, "reason": "not_written", "detail": str(result)[:200]})
                else:
                    accepted += 1
            metrics.HTTP_EVENTS.labels("accepted").inc(accepted)
            metrics.HTTP_EVENTS.labels("not_written").inc(len(valid) - accepted)
            rejected.sort(key=lambda r: r["index"])
            if not accepted:
                return self.json({"error": "no event was written to Kafka", "status": 503, "accepted": 0,
                                  "rejected": rejected}, status=503)
            return self.json({"accepted": accepted, "rejected": rejected}, status=202)

    @app.page("/experiments")
    class Experiments(View):
        async def get(self, request: Request) -> Response:
            try:
                found = await worker.experiment_results()
            except (OSError, TimeoutError, KafkaError) as e:
                return error(self, 503, f"experiments unavailable: Kafka did not answer ({type(e).__name__})")
            running = worker.holder.experiment
            return self.json({"experiments": found,
                              "serving": running.name if running is not None and running.running else None})

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            model = worker.holder.current
            ready = model is not None and worker.catalog_ready.is_set()
            return self.json({
                "status": "ok" if ready else "starting",
                "partitions": worker.assigned_partitions(),
                "model_version": model.model_version if model else None,
                "index_version": model.index_version if model else None,
                "index_kind": model.index.kind if model and model.index is not None else None,
                "items": model.n_items if model else 0,
            }, status=200 if ready else 503)

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            from importlib.metadata import PackageNotFoundError, version

            from stream.runtime.openapi import openapi_document

            try:
                release = version("streamrec")
            except PackageNotFoundError:  # run from a checkout that was never installed
                release = "unknown"
            return self.json(openapi_document(release, settings.top_k, settings.max_k))

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return metrics_response(metrics.REGISTRY)
