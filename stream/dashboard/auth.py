"""The dashboard's access rule: with ``STREAMREC_API_TOKEN`` set, the API's bearer token.

A browser cannot send a header when it navigates, so the token is also taken once from
``?token=`` or the login form, and answered with an HttpOnly, SameSite=Strict cookie that
holds an HMAC of it (never the token itself); every comparison is in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from aiohttp import web

COOKIE = "streamrec_dashboard"
OPEN_PATHS = frozenset({"/healthz", "/login"})
OPEN_PREFIXES = ("/static/",)  # the page's own code and the charting library: nothing of the system


def session_value(token: bytes) -> str:
    """What the cookie holds for ``token``: an HMAC, so a stolen cookie does not reveal the token."""
    return hmac.new(token, b"streamrec-dashboard-session", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: bytes) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a request may hold anything.
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, ``None`` for any other."""
    scheme, _, given = (header or "").strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def safe_next(path: str | None) -> str:
    """A redirect target on this site only (``/`` for anything else)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def with_session(response: web.StreamResponse, token: bytes, secure: bool) -> web.StreamResponse:
    response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="Strict", path="/", secure=secure)
    return response


def access_middleware(token: bytes | None):
    """An aiohttp middleware letting through requests with the token (header, cookie, or
    ``?token=`` once, which sets the cookie and redirects to the URL without it); the others get
    :func:`refused`. ``token`` ``None``: no rule."""
    expected_cookie = session_value(token).encode() if token is not None else b""

    @web.middleware
    async def guard(request: web.Request, handler):
        if token is None or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        if "token" in request.query:
            if not _same(request.query["token"], token):
                return refused(request)
            rest = {k: v for k, v in request.query.items() if k != "token"}
            target = request.path + ("?" + urlencode(rest) if rest else "")
            return with_session(web.HTTPSeeOther(target), token, request.secure)
        if _same(request.cookies.get(COOKIE), expected_cookie) or _same(bearer(request.headers.get("Authorization")),
                                                                         token):
            return await handler(request)
        return refused(request)

    return guard


def refused(request: web.Request) -> web.Response:
    """401: JSON for the pages' data, the login page for a browser."""
    from stream.dashboard.pages import login_page

    if request.path.startswith("/api/"):
        return web.json_response({"error": "this dashboard needs the API token", "status": 401}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="streamrec"'})
    return login_page(request.path_qs, status=401)


async def login(request: web.Request, token: bytes | None) -> web.StreamResponse:
    """``POST /login`` with form fields ``token`` and ``next``."""
    form = await request.post()
    target = safe_next(str(form.get("next", "/")))
    if token is None:
        return web.HTTPSeeOther(target)
    if not _same(str(form.get("token", "")), token):
        from stream.dashboard.pages import login_page

        return login_page(target, status=401, failed=True)
    return with_session(web.HTTPSeeOther(target), token, request.secure)
