"""The worker's HTTP guard (stream.runtime.web.api_middlewares) and the web options of create_app.

The guard runs on aiohttp's mocked requests, no socket; the worker on a broker is
tests/integration/test_http_auth.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stream.runtime.web import api_middlewares, bearer_matches
from stream.settings import Settings

TOKEN = "t0ken-0123456789-abcdef"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


async def not_found(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


def call(settings: Settings, path: str, authorization: str | None = None, handler=ok) -> web.Response:
    [guard] = api_middlewares(settings)
    headers = {"Authorization": authorization} if authorization is not None else {}
    return asyncio.run(guard(make_mocked_request("GET", path, headers=headers), handler))


def body(response: web.Response) -> dict:
    return json.loads(response.body)


PROTECTED = ["/recommendations/u1", "/items/i1/similar", "/users/u1/similar", "/", "/table/user-state/u1/",
             "/router/", "/nothing", "/healthz/", "/healthz/x", "/HEALTHZ", "/metrics"]


@pytest.mark.parametrize("path", PROTECTED)
def test_with_a_token_every_path_but_healthz_needs_it(path):
    settings = Settings(api_token=TOKEN)
    for header in (None, "", "Bearer", "Bearer ", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}",
                   TOKEN, "Bearer ünïcode", f"Bearer {TOKEN.upper()}"):
        answer = call(settings, path, header)
        assert answer.status == 401, (path, header)
        assert body(answer) == {"error": "this API needs a bearer token (Authorization: Bearer <token>)",
                                "status": 401}
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Bearer   {TOKEN}  "):
        answer = call(settings, path, header)
        assert answer.status == 200 and body(answer) == {"path": path}


def test_healthz_is_open_and_metrics_only_when_public():
    assert call(Settings(api_token=TOKEN), "/healthz").status == 200
    assert call(Settings(api_token=TOKEN), "/metrics").status == 401
    public = Settings(api_token=TOKEN, metrics_public=True)
    assert call(public, "/metrics").status == 200
    assert call(public, "/recommendations/u1").status == 401


def test_without_a_token_nothing_is_asked():
    for path in PROTECTED:
        assert call(Settings(), path).status == 200


def test_aiohttp_errors_answer_the_api_json():
    answer = call(Settings(), "/table/user-state/u1/", handler=not_found)
    assert answer.status == 404 and body(answer) == {"error": "not found", "status": 404}
    # With a token, an unknown path says nothing until the token is right.
    assert call(Settings(api_token=TOKEN), "/nothing", handler=not_found).status == 401
    assert call(Settings(api_token=TOKEN), "/nothing", f"Bearer {TOKEN}", handler=not_found).status == 404


def test_bearer_matches_compares_bytes():
    token = TOKEN.encode()
    assert bearer_matches(f"Bearer {TOKEN}", token)
    assert not bearer_matches(None, token)
    assert not bearer_matches("Bearer \udcff", token)  # a header aiohttp decoded with surrogateescape
    assert not bearer_matches("Bearer é" + TOKEN, token)


@pytest.mark.parametrize("token", ["short", "x" * 15, "has space-0123456789", "quote\"-0123456789", "é" * 20,
                                   "x" * 4097, ""])
def test_token_must_fit_a_header_and_is_never_quoted(token):
    with pytest.raises(ValueError) as raised:
        Settings(api_token=token)
    if token:
        assert token not in str(raised.value)


def test_the_app_serves_neither_faust_table_nor_router_views():
    """create_app turns Faust's /table and /router blueprints off and installs the guard."""
    from stream.runtime.app import create_app

    app = create_app(Settings(api_token=TOKEN))
    assert app.conf.web_tables_enabled is False and app.conf.web_router_enabled is False
    app.web.blueprints.apply(app.web)
    paths = [resource.canonical for resource in app.web.web_app.router.resources()]
    assert paths and not [p for p in paths if p.startswith(("/table", "/router"))], paths
    [guard] = app.web.web_app.middlewares
    assert guard.__name__ == "guard" and guard.__module__ == "stream.runtime.web"

