"""The demo's job, end to end on the real broker."""

import json
import re
import urllib.request

import pytest

from stream.demo.load import run_demo

pytestmark = pytest.mark.kafka


def test_demo_produces_and_reads_back_everything(settings):
    report = run_demo(settings, n_users=40, n_items=30, events_per_user=10, progress=False)
    assert report.events_sent > 40 * 3
    assert report.events_read == report.events_sent
    assert report.users == 40
    assert report.order_violations == 0
    assert report.items_published == 30
    assert sum(report.by_type.values()) == report.events_sent
    assert len(report.by_partition) == 4
    # Rerunning reads back only what the new run produced.
    again = run_demo(settings, n_users=40, n_items=30, events_per_user=10, progress=False)
    assert again.events_read == again.events_sent
    assert set(again.topics.values()) == {"exists"}
    text = "\n".join(report.lines())
    assert "per-user order preserved: yes" in text


def test_live_demo_shows_recommendations_that_follow_new_events(settings):
    from stream.demo.live import run_folder, run_live_demo, stop_demo
    from stream.settings import Settings
    from tests.helpers import free_port

    settings = Settings(**{**settings.model_dump(), "dashboard_port": free_port()})
    lines: list[str] = []
    try:
        result = run_live_demo(settings, lines.append, n_users=60, n_items=60, events_per_user=12, epochs=2,
                               keep_running=True)
        check_left_running(result, "\n".join(lines))
    finally:
        stopped = stop_demo(settings)
    assert sorted(s.split()[0] for s in stopped) == ["dashboard", "worker"]
    assert not list(run_folder(settings).glob("*.pid"))
    for url in printed_urls("\n".join(lines)):
        with pytest.raises(OSError):  # stopped: refused
            urllib.request.urlopen(url, timeout=5)
    assert result.model_version.startswith("v")  # a trained version was published and swapped in
    for user, items in result.after.items():
        assert items and items != result.before[user]
        assert not set(result.new_events[user]) & {r["item_id"] for r in items}  # just played: excluded
        assert any("because you played" in r["reason"] for r in items)
    text = "\n".join(lines)
    assert "swapped to" in text and "metrics: http://" in text
    # The short experiment: both arms got trials, the table was printed, the experiment stopped.
    experiment = result.experiment
    assert experiment is not None and experiment["running"]  # read before the stop
    assert all(arm["trials"] > 0 for arm in experiment["arms"]), experiment
    assert "experiment demo-ab" in text and "stopped demo-ab and promoted the" in text


def printed_urls(text: str) -> list[str]:
    return sorted(set(re.findall(r"http://127\.0\.0\.1:\d+/[^\s)]*", text)))


def check_left_running(result, text: str) -> None:
    """What the demo printed answers after it returned, and the dashboard shows the demo's users."""
    urls = printed_urls(text)
    assert result.dashboard_url and any(u.startswith(result.dashboard_url) for u in urls)
    assert "make demo-stop" in text
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200, url
    with urllib.request.urlopen(result.dashboard_url + "/api/users", timeout=10) as answer:
        shown = {u["user_id"] for u in json.loads(answer.read())["users"]}
    # The users recommended last: the demo's own (its experiment's rounds touch every user).
    assert len(shown) >= 40 and all(re.fullmatch(r"u000\d\d", u) for u in shown), shown
    for user in result.after:
        with urllib.request.urlopen(f"{result.dashboard_url}/users/{user}", timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"{result.dashboard_url}/api/users/{user}", timeout=10) as answer:
            page = json.loads(answer.read())
        assert page["recommendation"]["items"] and page["user"]["history"]
