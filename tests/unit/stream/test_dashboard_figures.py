"""The dashboard's figures are what the workers' /metrics say (stream/dashboard/figures.py),
its pages escape what they are given, and its redirects stay on the site."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stream.dashboard import figures
from stream.dashboard.auth import safe_next, session_value
from stream.dashboard.pages import error_page, render
from stream.dashboard.topics import PAYLOAD_PREFIX_BYTES, payload_prefix


def exposition(events: int, freshness: list[float], lag: dict[str, int], rejected: dict[tuple[str, str], int],
               hits: int = 0, trials: int = 0) -> str:
    registry = CollectorRegistry()
    Counter("streamrec_worker_events_consumed", "", registry=registry).inc(events)
    Counter("streamrec_worker_online_hits", "", registry=registry).inc(hits)
    Counter("streamrec_worker_online_trials", "", registry=registry).inc(trials)
    histogram = Histogram("streamrec_worker_freshness_seconds", "", buckets=(0.01, 0.05, 0.1, 1.0), registry=registry)
    for value in freshness:
        histogram.observe(value)
    gauge = Gauge("streamrec_worker_consumer_lag_records", "", ["partition"], registry=registry)
    for partition, value in lag.items():
        gauge.labels(partition).set(value)
    counter = Counter("streamrec_worker_records_rejected", "", ["topic", "reason"], registry=registry)
    for (topic, reason), value in rejected.items():
        counter.labels(topic, reason).inc(value)
    counter.labels("items", "bad_json")  # at 0: not shown
    Gauge("streamrec_worker_model_info", "", ["model_version", "index_version"], registry=registry).labels("v1", "i1").set(1)
    return generate_latest(registry).decode()


def test_counters_sum_over_workers_and_equal_their_metrics():
    a = figures.parse_samples(exposition(120, [0.005] * 9 + [0.5], {"0": 3, "1": 0}, {("events", "unknown_item"): 2},
                                         hits=1, trials=4))
    b = figures.parse_samples(exposition(30, [0.02], {"2": 5}, {("events", "unknown_item"): 1, ("events", "bad_json"): 4}))
    summary = figures.overview([a, b])
    assert summary.counters[figures.EVENTS] == 150
    assert summary.dead_letters == {"events/bad_json": 4, "events/unknown_item": 3}
    assert summary.lag == {"0": 3, "1": 0, "2": 5} and summary.to_dict()["lag_total"] == 8
    assert summary.hit_rate == 0.25
    assert figures.served_versions(a) == {"model_version": "v1", "index_version": "i1"}
    # 11 observations: 9 up to 10 ms, 1 up to 50 ms, 1 up to 1 s; p50 interpolated in the first bucket.
    assert math.isclose(summary.freshness_p50_s, 0.01 * 5.5 / 9)
    assert 0.1 < summary.freshness_p99_s <= 1.0


def test_quantile_is_prometheus_histogram_quantile():
    assert figures.quantile(0.5, []) is None
    assert figures.quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None
    assert figures.quantile(0.5, [(1.0, 10), (2.0, 20), (math.inf, 20)]) == 1.0
    assert figures.quantile(0.75, [(1.0, 10), (2.0, 20), (math.inf, 20)]) == 1.5
    assert figures.quantile(0.99, [(1.0, 10), (math.inf, 20)]) == 1.0  # past the last bound: that bound
    assert figures.beyond_last_bound(0.99, [(1.0, 10), (math.inf, 20)])  # ... which the page marks "> 1000 ms"
    assert not figures.beyond_last_bound(0.99, [(1.0, 10), (2.0, 20), (math.inf, 20)])
    assert not figures.beyond_last_bound(0.5, [(1.0, 10), (math.inf, 20)])  # 10 of 20 are within 1.0
    assert not figures.beyond_last_bound(0.99, [])


def test_rates_between_reads_treat_a_restart_as_a_reset():
    before = {"w1": {figures.EVENTS: 100, figures.RECOMMENDATIONS: 50, figures.HITS: 1, figures.TRIALS: 2},
              "w2": {figures.EVENTS: 500}}
    after = {"w1": {figures.EVENTS: 140, figures.RECOMMENDATIONS: 70, figures.HITS: 2, figures.TRIALS: 6},
             "w2": {figures.EVENTS: 10}, "w3": {figures.EVENTS: 1000}}  # w2 restarted; w3 is new
    point = figures.interval(before, after, 2.0, 10.0)
    assert point.events_per_s == (40 + 10) / 2 and point.recommendations_per_s == 10
    assert point.hit_rate == 0.25 and point.to_list() == [10.0, 25.0, 10.0, 0.25]


def test_pages_escape_ids_and_messages():
    text = render("User <b>", "user", ident='"><script>x()</script>', search_value="<i>")
    assert "<script>x()" not in text and "&lt;script&gt;" in text and "<b>" not in text
    page = error_page(404, "Unknown user", "unknown user '<img src=x onerror=y>'")
    assert page.status == 404 and "<img" not in page.text and "&lt;img" in page.text


def test_redirects_stay_on_the_site_and_the_cookie_is_not_the_token():
    assert safe_next("/users/u1?x=1") == "/users/u1?x=1"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", "", None):
        assert safe_next(bad) == "/"
    assert session_value(b"a-token-of-16-chars") != "a-token-of-16-chars"
    assert len(session_value(b"a-token-of-16-chars")) == 64


def test_dead_letter_payloads_are_prefixes():
    assert payload_prefix(None) is None
    assert payload_prefix(b"\xff\xfeok") == "\ufffd\ufffdok"
    long = payload_prefix(b"x" * 10_000)
    assert long is not None and len(long) == PAYLOAD_PREFIX_BYTES + 1 and long.endswith("…")
