"""The project's commands on Faust's CLI (``streamrec <command> --help``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click
from faust.cli import AppCommand, argument, option

from stream.app import app
from stream.settings import get_settings


def _echo(line: str = "") -> None:
    click.echo(line)


@app.command()
async def settings(self: AppCommand) -> None:
    """Print the effective settings (secrets masked)."""
    _echo(json.dumps(get_settings().redacted(), indent=2, default=str))


@app.command()
async def create_topics(self: AppCommand) -> None:
    """Create the project's topics (idempotent; checks partition counts of existing ones)."""
    from stream.admin import ensure_topics

    for topic, state in ensure_topics(get_settings()).items():
        _echo(f"{topic}: {state}")


@app.command(
    option("--generate", "n_events", type=click.IntRange(min=1), required=True,
           help="Number of generated events to send."),
    option("--users", type=click.IntRange(min=1), default=None, help="Users to spread them over (default N/30)."),
    option("--items", type=click.IntRange(min=12), default=500, show_default=True, help="Catalogue size."),
    option("--seed", type=int, default=7, show_default=True),
    option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
           help="Events per second (default: as fast as possible)."),
    option("--catalog/--no-catalog", default=True, show_default=True,
           help="Also publish the catalogue to the items topic."),
)
async def produce(self: AppCommand, n_events: int, users: int | None, items: int, seed: int,
                  rate: float | None, catalog: bool) -> None:
    """Send N events from the generated data set to the events topic."""
    from models.data.synthetic import generate_demo_dataset
    from stream.admin import ensure_topics
    from stream.demo import publish_catalog
    from stream.producer import EventProducer

    settings = get_settings()
    ensure_topics(settings)
    n_users = users or max(1, n_events // 30)
    per_user = -(-n_events // n_users)
    while True:  # event counts per user are Poisson: generate with a margin, then cut
        dataset = generate_demo_dataset(n_users=n_users, n_items=items, events_per_user=per_user + 3, seed=seed)
        if len(dataset.events) >= n_events:
            break
        per_user *= 2
    events = dataset.events[:n_events]
    if catalog:
        _echo(f"published {publish_catalog(settings, dataset)} items to {settings.topic('items')}")
    with EventProducer(settings) as producer:
        report = producer.send_many(events, rate=rate, total=len(events), progress=True, strict=True)
    _echo(f"sent {report.sent} events to {producer.topic} in {report.seconds:.1f}s ({report.rate:,.0f}/s)")


@app.command(
    argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
           help="Events per second (default: as fast as possible)."),
    option("--rebase/--no-rebase", default=False, show_default=True,
           help="Shift timestamps so the first event happens now (gaps kept)."),
    option("--strict/--no-strict", default=False, show_default=True,
           help="Stop at the first invalid event instead of skipping and counting it."),
)
async def replay(self: AppCommand, file: Path, rate: float | None, rebase: bool, strict: bool) -> None:
    """Send the events of FILE (JSON lines or CSV) in file order: streamrec replay FILE."""
    from stream.errors import InvalidEvent
    from stream.producer import EventProducer, read_event_file

    path = file
    total = sum(1 for line in path.open(encoding="utf-8", errors="replace") if line.strip())
    total -= 1 if path.suffix.lower() == ".csv" else 0
    settings = get_settings()
    events = read_event_file(path, rebase_to_ms=int(time.time() * 1000) if rebase else None)
    with EventProducer(settings) as producer:
        try:
            report = producer.send_many(events, rate=rate, total=total, progress=True, strict=strict)
        except InvalidEvent as e:
            raise click.ClickException(f"invalid event ({e.reason}): {e.detail}") from e
    _echo(f"sent {report.sent} events to {producer.topic} in {report.seconds:.1f}s ({report.rate:,.0f}/s)")
    if report.invalid:
        _echo("skipped invalid events: " + ", ".join(f"{r}={n}" for r, n in report.invalid.most_common()))
        sys.exit(1)


@app.command(
    option("--users", type=click.IntRange(min=1), default=300, show_default=True),
    option("--items", type=click.IntRange(min=12), default=200, show_default=True),
    option("--events-per-user", type=click.IntRange(min=1), default=30, show_default=True),
    option("--seed", type=int, default=7, show_default=True),
)
async def demo(self: AppCommand, users: int, items: int, events_per_user: int, seed: int) -> None:
    """Run the main job on the generated data set against the configured broker."""
    from stream.demo import run_demo

    settings = get_settings()
    _echo(f"streamrec demo against {', '.join(settings.kafka_bootstrap)} "
          f"(topic prefix {settings.topic_prefix!r})")
    # run_demo drives its own asyncio loop (aiokafka) around blocking kafka-python calls.
    report = await asyncio.to_thread(run_demo, settings, n_users=users, n_items=items,
                                     events_per_user=events_per_user, seed=seed)
    for line in report.lines():
        _echo("  " + line)
