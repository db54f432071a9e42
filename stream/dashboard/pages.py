"""The dashboard's HTML: one layout, each page's skeleton, and the error pages.

Pages are filled in the browser by ``static/dashboard.js`` from the ``/api/...`` JSON, with
``textContent`` only, so nothing a record holds is ever parsed as HTML; what the server writes
itself (ids, messages) goes through :func:`html.escape`. No inline script or style: the
Content-Security-Policy (:data:`SECURITY_HEADERS`) allows only this site's files.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NAV = (("/", "Overview"), ("/users", "Users"), ("/items", "Items"), ("/models", "Models"),
       ("/dead-letters", "Dead letters"))

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · streamrec</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/uPlot.min.css">
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><header><a class="brand" href="/">streamrec</a><nav>{nav}</nav></header>
<main id="page" data-page="{page}" data-id="{ident}">{body}</main>
<script src="/static/uPlot.iife.min.js"></script><script src="/static/dashboard.js"></script></body></html>
"""

SEARCH = """<form class="search" method="get" action="/{kind}s"><label>{label} id
<input name="id" value="{value}" maxlength="200" required autocomplete="off"></label>
<button type="submit">Show</button></form>"""

BODIES = {
    "overview": """<h1>Overview</h1><p class="status" id="status">loading…</p>
<section class="cards" id="cards"></section>
<section><h2>Over time</h2><div class="charts"><div id="chart-rates"></div><div id="chart-hits"></div></div></section>
<section><h2>Workers</h2><table id="workers"></table></section>
<section class="two"><div><h2>Dead letters by reason</h2><table id="dead-reasons"></table></div>
<div><h2>Consumer lag by partition</h2><table id="lag"></table></div></section>
<section><h2>Users recommended last</h2><ul class="chips" id="recent-users"></ul></section>""",
    "users": """<h1>Users</h1>{search}<section><h2>Users recommended last</h2>
<ul class="chips" id="recent-users"></ul></section>""",
    "user": """<h1>User <span id="user-id"></span></h1>{search}<p class="status" id="status">loading…</p>
<p class="live" id="live">live updates: connecting…</p>
<section class="cards" id="cards"></section>
<section><h2>Current recommendations</h2><table id="recommendations"></table></section>
<section class="two"><div><h2>Recent history</h2><table id="history"></table></div>
<div><h2>Similar users</h2><table id="similar-users"></table></div></section>""",
    "items": """<h1>Items</h1>{search}<p>Search an item by id, or open one from a user's page.</p>""",
    "item": """<h1>Item <span id="item-id"></span></h1>{search}<p class="status" id="status">loading…</p>
<section class="cards" id="cards"></section>
<section class="two"><div><h2>Catalogue record</h2><table id="metadata"></table></div>
<div><h2>Similar items</h2><table id="similar-items"></table></div></section>""",
    "models": """<h1>Models</h1><p class="status" id="status">loading…</p>
<section class="cards" id="cards"></section>
<section><h2>Offline metrics over versions</h2><div id="chart-versions"></div></section>
<section><h2>Published versions</h2><table id="versions"></table></section>
<section><h2>Experiments</h2><div id="experiments"></div></section>
<section><h2>Trainer runs by gate decision</h2><table id="trainer"></table></section>""",
    "dead-letters": """<h1>Dead letters</h1><p class="status" id="status">loading…</p>
<p>The latest rejected records, newest first; keys and values are shown as a prefix of their text.</p>
<table id="dead-letters"></table>""",
}


def render(title: str, page: str, ident: str = "", search_value: str = "", body: str | None = None) -> str:
    """A page of the layout; ``body`` (already safe HTML) replaces the page's skeleton when given."""
    kind = "item" if page in ("item", "items") else "user"
    search = SEARCH.format(kind=kind, label=kind.capitalize(), value=escape(search_value))
    nav = "".join(f'<a href="{href}"{" class=current" if _current(page, href) else ""}>{name}</a>'
                  for href, name in NAV)
    return LAYOUT.format(title=escape(title), page=escape(page), ident=escape(ident), nav=nav,
                         body=body if body is not None else BODIES[page].format(search=search))


def _current(page: str, href: str) -> bool:
    return href == {"overview": "/", "user": "/users", "item": "/items"}.get(page, "/" + page)


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def page_response(title: str, page: str, ident: str = "") -> web.Response:
    return html_response(render(title, page, ident, search_value=ident))


def error_page(status: int, title: str, message: str) -> web.Response:
    """A page saying what went wrong (``message`` is escaped), with the status it names."""
    body = (f'<h1>{escape(title)}</h1><p class="error" id="error">{escape(message)}</p>'
            f'<p>HTTP {status}. <a href="/">Overview</a> · <a href="/users">Users</a> · <a href="/items">Items</a></p>')
    return html_response(render(title, "error", body=body), status)


def login_page(next_path: str, status: int = 401, failed: bool = False) -> web.Response:
    body = ("<h1>Sign in</h1><p>This dashboard needs the API token (<code>STREAMREC_API_TOKEN</code>).</p>"
            + ('<p class="error">That token is not the right one.</p>' if failed else "")
            + '<form class="search" method="post" action="/login"><label>Token '
              '<input name="token" type="password" required autocomplete="current-password"></label>'
              f'<input type="hidden" name="next" value="{escape(next_path)}"><button type="submit">Sign in</button></form>')
    return html_response(render("Sign in", "login", body=body), status)
