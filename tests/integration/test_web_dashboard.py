"""``streamrec dashboard`` against a real worker and broker: its answers over HTTP, and its
pages in headless Chromium (selenium; skipped when chromium or chromedriver is absent,
which ``make test`` installs through ``make deploy-tools``)."""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.demo.local_worker import LocalDashboard
from stream.settings import Settings
from tests.helpers import free_port
from tests.worker_harness import start_catalogue_worker, wait_for

pytestmark = pytest.mark.kafka

TOKEN = "dash-token-" + uuid.uuid4().hex
HOSTILE = "<img src=x onerror=window.pwned=1>"
USERS = [f"u{n}" for n in range(4)]


def _events(data, user: str, items: list[str]) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps([{"user_id": user, "item_id": i, "event_type": "play", "timestamp_ms": now, "value": 120.0}
                       for i in items]).encode()


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    data = generate_demo_dataset(n_users=10, n_items=60, events_per_user=3, seed=11)
    settings, worker = start_catalogue_worker(kafka_bootstrap, root, "dash", 2, data.items, api_token=TOKEN)
    items = [it["item_id"] for it in data.items]
    for n, user in enumerate(USERS):
        status, body = worker.get("/events", body=_events(data, user, items[3 * n:3 * n + 3]))
        assert status == 202, body
    for user in USERS:
        wait_for(lambda u=user: worker.get(f"/recommendations/{u}")[0] == 200, what=f"{user} applied")
    # A hostile event: dead-lettered (unknown item) with markup in its payload.
    worker.get("/events", body=json.dumps({"user_id": "u9", "item_id": HOSTILE, "event_type": "click",
                                           "timestamp_ms": int(time.time() * 1000)}).encode())
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    board_settings = Settings(**{**settings.model_dump(), "dashboard_port": free_port(),
                                 "dashboard_workers": (worker.url, dead), "dashboard_scrape_interval_s": 0.5,
                                 "dashboard_trainer_url": dead})
    board = LocalDashboard(board_settings, root / "dashboard.log").start()
    yield data, worker, board, dead
    board.stop()
    worker.stop()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, body text, headers) of a GET that does not follow redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_token_is_required_and_a_link_with_it_sets_a_cookie(world):
    _, _, board, _ = world
    for path in ("/", "/api/overview", "/users/u0", "/api/users/u0/stream"):
        assert fetch(board.url + path)[0] == 401, path
    assert fetch(board.url + "/?token=wrong-token-0123456789")[0] == 401
    status, _, headers = fetch(board.url + f"/models?token={TOKEN}")
    assert status == 303 and headers["Location"] == "/models"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert fetch(board.url + "/api/overview", {"Cookie": cookie.split(";")[0]})[0] == 200
    assert fetch(board.url + "/api/overview", AUTH)[0] == 200
    assert fetch(board.url + "/healthz")[0] == 200


def test_bad_and_unknown_ids_and_a_worker_down_are_clear_pages(world, tmp_path):
    _, worker, board, dead = world
    status, body, headers = fetch(board.url + "/users/" + "x" * 300, AUTH)
    assert status == 400 and "128" in body and "Traceback" not in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, body, _ = fetch(board.url + "/users/nobody-here", AUTH)
    assert status == 404 and "unknown user" in body
    status, body, _ = fetch(board.url + "/items/no-such-item", AUTH)
    assert status == 404 and "unknown item" in body
    status, body, _ = fetch(board.url + "/users/" + urllib.request.quote(HOSTILE, safe=""), AUTH)
    assert status == 404 and HOSTILE not in body and "&lt;img src=x" in body
    assert fetch(board.url + "/api/users/" + "y" * 300, AUTH)[0] == 400
    assert fetch(board.url + "/no/such/page", AUTH)[0] == 404
    # The overview names the worker that does not answer; the other's figures are still there.
    overview = json.loads(fetch(board.url + "/api/overview", AUTH)[1])
    down = [w for w in overview["workers"] if not w["ok"]]
    assert [w["url"] for w in down] == [dead] and overview["workers_answered"] == 1
    # A dashboard whose only worker is down says so on a user's page.
    alone = LocalDashboard(Settings(**{**board.settings.model_dump(), "dashboard_port": free_port(),
                                       "dashboard_workers": (dead,)}), tmp_path / "alone.log").start()
    try:
        status, body, _ = fetch(alone.url + "/users/u0", AUTH)
        assert status == 502 and dead in body and "did not answer" in body
    finally:
        alone.stop()


def test_dead_letters_are_shown_escaped_with_their_reason(world):
    _, _, board, _ = world
    found = wait_for(lambda: [d for d in json.loads(fetch(board.url + "/api/dead-letters", AUTH)[1])["dead_letters"]
                              if d["reason"] == "unknown_item"], what="the dead letter")
    assert HOSTILE in found[0]["value"]  # as text, for the page to show with textContent


def test_item_counts_come_from_the_topics(world):
    data, worker, board, _ = world
    item = data.items[0]["item_id"]  # u0 played it
    body = wait_for(lambda: (lambda d: d if d["counts"]["consumed"].get("play") else None)(
        json.loads(fetch(board.url + f"/api/items/{item}", AUTH)[1])), what="the item's counts")
    assert body["item"]["item_id"] == item and body["counts"]["consumed"]["play"] >= 1
    assert body["similar"]["items"]


def test_recommended_and_similar_items_carry_their_catalogue_titles(world):
    data, worker, board, _ = world
    titles = {it["item_id"]: it["title"] for it in data.items}
    user = json.loads(fetch(board.url + "/api/users/u0", AUTH)[1])
    items = user["recommendation"]["items"]
    assert items and all(it["title"] == titles[it["item_id"]] for it in items)
    item = json.loads(fetch(board.url + f"/api/items/{data.items[0]['item_id']}", AUTH)[1])
    assert all(it["title"] == titles[it["item_id"]] for it in item["similar"]["items"])


# --- in a real browser ------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromedriver are not installed (make deploy-tools installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                 "--disable-gpu"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def text_of(driver, element_id: str) -> str:
    """The element's rendered text, read in one script (see :func:`recommended_ids`); "" while the
    page has not drawn it yet."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                 element_id)


def wait_until(driver, predicate, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d), message=what)


def recommended_ids(driver) -> list[str]:
    # Read in one script: the page redraws the table when the user changes, and elements found
    # by one call may be gone by the next.
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#recommendations tr[data-item-id]'), r => r.dataset.itemId)")


def test_every_page_loads_without_a_console_error(world, browser, tmp_path):
    data, worker, board, _ = world
    browser.get(board.url + f"/?token={TOKEN}")  # the cookie, then the page without the token
    assert "token=" not in browser.current_url
    pages = {"overview": "/", "users": "/users", "user": "/users/u0", "item": f"/items/{data.items[0]['item_id']}",
             "models": "/models", "dead-letters": "/dead-letters"}
    for name, path in pages.items():
        browser.get(board.url + path)
        wait_until(browser, lambda d: "loading" not in (text_of(d, "status") if name != "users" else "x"), 10,
                   f"{name} filled in")
        time.sleep(0.3)  # a chart's or a table's second call
        browser.save_screenshot(str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert console_errors(browser) == [], name
        assert browser.execute_script("return window.pwned === undefined")
    browser.get(board.url + "/dead-letters")
    wait_until(browser, lambda d: HOSTILE in text_of(d, "dead-letters"), 10, "the hostile payload shown as text")
    assert browser.execute_script("return window.pwned === undefined")
    browser.get(board.url + "/users")
    wait_until(browser, lambda d: all(u in text_of(d, "recent-users").split() for u in USERS), 10, "recent users")


def test_user_page_shows_the_api_recommendations_and_follows_a_new_event_live(world, browser, tmp_path):
    data, worker, board, _ = world
    browser.get(board.url + f"/users/u1?token={TOKEN}")
    wait_until(browser, lambda d: recommended_ids(d), 10, "recommendations shown")
    wait_until(browser, lambda d: "on" in text_of(d, "live"), 10, "the live stream open")
    status, api = worker.get("/recommendations/u1")
    assert status == 200 and recommended_ids(browser) == [i["item_id"] for i in api["items"]]
    before = text_of(browser, "history-length")
    browser.execute_script("window.notReloaded = true")
    new_item = next(i for i in recommended_ids(browser))  # a recommended item, played now: it leaves the list
    status, _ = worker.get("/events", body=_events(data, "u1", [new_item]))
    assert status == 202
    # Within 2 s of the event being written, without a reload.
    wait_until(browser, lambda d: text_of(d, "history-length") != before and new_item not in recommended_ids(d), 2.0,
               "the page updated within 2 s")
    assert browser.execute_script("return window.notReloaded === true")
    assert console_errors(browser) == []
    status, api = worker.get("/recommendations/u1")
    wait_until(browser, lambda d: recommended_ids(d) == [i["item_id"] for i in api["items"]], 5, "the new list")
    browser.save_screenshot(str(tmp_path / "user-after-event.png"))


def test_overview_event_count_matches_the_worker_metrics(world, browser, tmp_path):
    _, worker, board, _ = world
    browser.get(board.url + f"/?token={TOKEN}")

    def agree(driver) -> bool:
        shown = text_of(driver, "events-consumed").replace(",", "")
        return shown.isdigit() and int(shown) == worker.metric("streamrec_worker_events_consumed_total")

    wait_until(browser, agree, 15, "the overview's event count equal to /metrics")
    assert int(text_of(browser, "events-consumed").replace(",", "")) >= len(USERS) * 3
    browser.save_screenshot(str(tmp_path / "overview.png"))
    assert console_errors(browser) == []
