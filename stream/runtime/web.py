"""HTTP API served by each worker (Faust web views).

``GET /recommendations/{user_id}?k=``  the user's recommendation (routed to the worker owning the user)
``GET /items/{item_id}/similar?k=``    nearest items (e-commerce "similar items")
``GET /users/{user_id}/similar?k=``    users with the nearest embeddings (social: friend suggestions)
``GET /healthz``                       200 when the catalogue and a model are loaded, else 503
``GET /metrics``                       Prometheus exposition

Errors are JSON ``{"error": ...}``: 400 for a bad parameter, 404 for an unknown id.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from stream.core.codec import check_id
from stream.core.state import UserState
from stream.errors import InvalidRecord
from stream.exposition import metrics_response
from stream.runtime import metrics

if TYPE_CHECKING:
    from stream.runtime.worker import Worker


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


def register_views(app: faust.App, worker: Worker) -> None:
    """Add the API's pages to ``app``."""
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

    @app.page("/recommendations/{user_id}")
    class Recommendations(View):
        @app.table_route(table=worker.user_state, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            return await answer(self, self._get, request, user_id=user_id)

        async def _get(self, request: Request, user_id: str) -> Response:
            user_id = parse_id("user_id", user_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model = model_or_503(self)
            raw = worker.user_state.get(user_id.encode())
            if raw is None:
                return error(self, 404, f"unknown user {user_id!r}")
            state = UserState.from_json(raw)
            [recommendation], _ = worker.processor.recommend(model, [user_id], [state], k, int(time.time() * 1000))
            return self.json({**recommendation.to_dict(), "history_length": len(state.history)})

    @app.page("/items/{item_id}/similar")
    class SimilarItems(View):
        async def get(self, request: Request, item_id: str) -> Response:
            return await answer(self, self._get, request, item_id=item_id)

        async def _get(self, request: Request, item_id: str) -> Response:
            item_id = parse_id("item_id", item_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model = model_or_503(self)
            if not model.has_item(item_id):
                return error(self, 404, f"unknown item {item_id!r}")
            similar = model.similar_items(item_id, k)
            return self.json({
                "item_id": item_id,
                "items": [{"item_id": i, "score": round(s, 6), "title": model.titles.get(i)} for i, s in similar],
                "model_version": model.model_version,
                "index_version": model.index_version,
            })

    @app.page("/users/{user_id}/similar")
    class SimilarUsers(View):
        @app.table_route(table=worker.user_state, match_info="user_id")
        async def get(self, request: Request, user_id: str) -> Response:
            return await answer(self, self._get, request, user_id=user_id)

        async def _get(self, request: Request, user_id: str) -> Response:
            user_id = parse_id("user_id", user_id)
            k = parse_k(request, settings.top_k, settings.max_k)
            model_or_503(self)
            if worker.user_state.get(user_id.encode()) is None:
                return error(self, 404, f"unknown user {user_id!r}")
            similar = worker.similar_users(user_id, k)
            if similar is None:
                return error(self, 404, f"user {user_id!r} has no embedding yet")
            return self.json({"user_id": user_id,
                              "users": [{"user_id": u, "score": round(s, 6)} for u, s in similar]})

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
                "items": model.n_items if model else 0,
            }, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return metrics_response(metrics.REGISTRY)
