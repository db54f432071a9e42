"""The project's commands on Faust's CLI (``streamrec <command> --help``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError
from faust.cli import AppCommand, argument, option
from kafka.errors import KafkaError as PythonKafkaError  # kafka-python's: the admin client and EventProducer

from stream.errors import ConfigError
from stream.runtime.app import app
from stream.settings import get_settings


def _echo(line: str = "") -> None:
    click.echo(line)


class ClientCommand(AppCommand):
    """A command that is only a Kafka client, not a Faust service: run on a plain event loop,
    so a usage or Kafka error is click's one-line error and exit status rather than a
    traceback from mode's worker (which Faust runs every ``async def`` command in)."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        try:
            asyncio.run(self.execute(*(self.args + args), **{**self.kwargs, **kwargs}))
        except click.ClickException as e:  # Faust's caller would print its traceback and exit 1
            e.show()
            raise SystemExit(e.exit_code) from None
        except (KafkaError, PythonKafkaError, OSError, TimeoutError) as e:
            click.echo(f"Error: Kafka at {','.join(get_settings().kafka_bootstrap)} did not answer: {e!r}", err=True)
            raise SystemExit(1) from None


@app.command()
async def settings(self: AppCommand) -> None:
    """Print the effective settings (secrets masked)."""
    _echo(json.dumps(get_settings().redacted(), indent=2, default=str))


@app.command()
async def create_topics(self: AppCommand) -> None:
    """Create the project's topics (idempotent; checks partition counts of existing ones)."""
    from stream.kafka.admin import ensure_topics

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
    option("--rebase/--no-rebase", default=True, show_default=True,
           help="Shift the generated timestamps so the last event happens now (gaps kept)."),
    base=ClientCommand,
)
async def produce(self: AppCommand, n_events: int, users: int | None, items: int, seed: int,
                  rate: float | None, catalog: bool, rebase: bool) -> None:
    """Send N events from the generated data set to the events topic."""
    from models.data.synthetic import generate_demo_dataset
    from stream.kafka.admin import ensure_topics
    from stream.kafka.producer import publish_catalog
    from stream.kafka.producer import EventProducer

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
    if rebase and events:
        shift = int(time.time() * 1000) - events[-1]["timestamp_ms"]
        events = [{**e, "timestamp_ms": e["timestamp_ms"] + shift} for e in events]
    if catalog:
        _echo(f"published {publish_catalog(settings, dataset.items)} items to {settings.topic('items')}")
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
    base=ClientCommand,
)
async def replay(self: AppCommand, file: Path, rate: float | None, rebase: bool, strict: bool) -> None:
    """Send the events of FILE (JSON lines or CSV) in file order: streamrec replay FILE."""
    from stream.errors import InvalidEvent
    from stream.kafka.producer import EventProducer, read_event_file

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
    option("--epochs", type=click.IntRange(min=1), default=8, show_default=True,
           help="Most training epochs of the demo's two-tower model."),
    option("--keep/--no-keep", default=True, show_default=True,
           help="Leave the worker and the dashboard running at the end (a rerun or --stop stops them)."),
    option("--stop", is_flag=True, default=False, help="Only stop what the last demo left running."),
)
async def demo(self: AppCommand, users: int, items: int, events_per_user: int, seed: int, epochs: int,
               keep: bool, stop: bool) -> None:
    """The main job: events through Kafka, a live worker, a trained model, fresh recommendations."""
    from stream.demo.live import run_live_demo, stop_demo

    settings = get_settings()
    if stop:
        stopped = await asyncio.to_thread(stop_demo, settings)
        _echo("stopped " + ", ".join(stopped) if stopped else "no demo process was running")
        return
    _echo(f"streamrec demo against {', '.join(settings.kafka_bootstrap)}")
    # The demo drives its own asyncio loops (aiokafka) and blocking clients: run it in a thread.
    await asyncio.to_thread(run_live_demo, settings, _echo, n_users=users, n_items=items,
                            events_per_user=events_per_user, seed=seed, epochs=epochs, keep_running=keep)


@app.command(
    option("--port", type=click.IntRange(1, 65535), default=None,
           help="Port (default: STREAMREC_DASHBOARD_PORT, 6080)."),
    option("--host", default=None, help="Address to bind (default: STREAMREC_DASHBOARD_HOST, 127.0.0.1)."),
    option("--worker", "workers", multiple=True, metavar="URL",
           help="A worker's HTTP URL, repeatable (default: STREAMREC_DASHBOARD_WORKERS, http://127.0.0.1:6066)."),
    base=ClientCommand,
)
async def dashboard(self: AppCommand, port: int | None, host: str | None, workers: tuple[str, ...]) -> None:
    """The web dashboard: the live system, users, items, model versions, experiments, dead letters.

    A process of its own that reads every worker's HTTP API and /metrics and the topics; behind
    the API's bearer token when STREAMREC_API_TOKEN is set (open it once with ?token=...).
    """
    from stream.dashboard.app import serve
    from stream.settings import Settings

    settings = get_settings()
    overrides = {k: v for k, v in (("dashboard_port", port), ("dashboard_host", host),
                                   ("dashboard_workers", workers or None)) if v is not None}
    if overrides:
        try:
            settings = Settings(**{**settings.model_dump(), **overrides})
        except ValueError as e:
            raise click.UsageError(str(e).splitlines()[-1].strip()) from None
    try:
        await serve(settings, ready=lambda url: _echo(f"dashboard on {url}/ reading "
                                                       f"{', '.join(settings.dashboard_workers)}"))
    except OSError as e:  # the port is taken (the Kafka feeds retry their own errors)
        raise click.ClickException(f"cannot listen on {settings.dashboard_host}:{settings.dashboard_port}: {e}") from None


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``10m``, ``2h`` or a bare number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m or 1h") from None
    if seconds <= 0:
        raise click.BadParameter("the duration must be positive")
    return seconds


def _train_options() -> tuple[option, ...]:
    """Every TrainConfig field (``--dim``, ``--loss``, ..., defaults the trainer's: models.train.config's
    trainer_config()), then the run's own options."""
    from models.train.config import trainer_config
    from models.train.options import click_options

    return (
        *click_options(option, trainer_config()),
        option("--margin", type=click.FloatRange(min=0), default=0.005, show_default=True,
               help="Publish unless NDCG@10 is worse than the served version's by more than this."),
        option("--publish/--no-publish", default=True, show_default=True),
        option("--warm-start/--retrain", "warm_start", default=True, show_default=True,
               help="Start from the served version's weights when its towers have the same shape."),
        option("--select", type=click.Choice(["auto", "fixed"]), default=None,
               help="auto: train the candidate towers and publish the best on validation (--tower, --loss, "
                    "--batch-size and --content are then chosen, --max-len is a cap); fixed: train exactly "
                    "these settings. Default: STREAMREC_TRAIN_SELECT (auto)."),
        option("--time-budget", "time_budget_s", type=click.FloatRange(min=1), default=None,
               help="Seconds for training the candidates (auto). Default: STREAMREC_TRAIN_TIME_BUDGET_S (900)."),
        option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
               help="Train on this many local processes with PyTorch DDP (gloo on CPU, NCCL with a GPU each), "
                    "each on a disjoint shard of the users; trains the given settings (--select fixed)."),
    )


_TRAIN_OPTIONS = _train_options()


def _train_config(values: dict[str, Any]):
    """The TrainConfig of the parsed TrainConfig options; a bad value is a usage error naming the field."""
    from models.train.config import trainer_config
    from models.train.options import config_from_options

    try:
        return config_from_options(values, trainer_config())
    except ValueError as e:
        raise click.UsageError(str(e)) from e


@app.command(*_TRAIN_OPTIONS, base=ClientCommand)
async def train(self: AppCommand, margin: float, publish: bool, warm_start: bool, select: str | None,
                time_budget_s: float | None, nproc: int, **config: Any) -> None:
    """Train once on a snapshot of the topics; publish the version if it is not worse."""
    from stream.trainer.run import train_once

    try:
        run = await asyncio.to_thread(train_once, get_settings(), _train_config(config), margin,
                                      publish=publish, warm_start=warm_start, select=select,
                                      time_budget_s=time_budget_s, nproc=nproc)
    except (ConfigError, LookupError) as e:  # a window too large for memory, --nproc with --select auto, no topic
        raise click.ClickException(str(e).strip("'\"")) from None
    _echo(run.summary())


@app.command(
    option("--every", "every", default="10m", show_default=True, help="Time between runs (30s, 10m, 1h)."),
    option("--runs", type=click.IntRange(min=1), default=None, help="Stop after this many runs."),
    *_TRAIN_OPTIONS,
)
async def trainer(self: AppCommand, every: str, runs: int | None, margin: float, publish: bool,
                  warm_start: bool, select: str | None, time_budget_s: float | None, nproc: int,
                  **options: Any) -> None:
    """Train periodically (streamrec trainer --every 10m); each run as `streamrec train`."""
    from stream.trainer.run import train_once

    from stream.trainer import metrics as trainer_metrics

    settings = get_settings()
    interval = parse_duration(every)
    config = _train_config(options)
    http = await trainer_metrics.start_http(settings.trainer_host, settings.trainer_port)
    _echo(f"trainer metrics on http://{settings.trainer_host}:{settings.trainer_port}/metrics")
    done = 0
    try:
        while runs is None or done < runs:
            started = time.monotonic()
            try:
                run = await asyncio.to_thread(train_once, settings, config, margin, publish=publish,
                                              warm_start=warm_start, select=select, time_budget_s=time_budget_s,
                                              nproc=nproc)
                result = "published" if run.published else (
                    "rejected" if run.reason.startswith("worse") else "skipped")
                trainer_metrics.record_run(result, time.monotonic() - started, run.metrics, run.baseline_metrics,
                                           run.snapshot)
                _echo(run.summary())
            except Exception as e:  # one failed run must not end the periodic trainer
                trainer_metrics.record_run("failed", time.monotonic() - started)
                _echo(f"trainer run failed: {e!r}")
            done += 1
            if runs is None or done < runs:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        await http.cleanup()


@app.command(
    option("--data", "data", default="ml-100k", show_default=True,
           help="ml-100k, ml-1m, yoochoose-100k, taobao, demo, or a path to a data folder or interaction log."),
    option("--models", "model_names", default="all", show_default=True,
           help="Comma-separated registered model names, or 'all'; 'auto' is the trainer's automatic choice."),
    option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
           help="Write the report as JSON here (and a PNG chart beside it)."),
)
async def evaluate(self: AppCommand, data: str, model_names: str, out: Path | None) -> None:
    """Train and evaluate every model on one leave-last-out split; print one table."""
    import models.train.recommender  # noqa: F401  (registers the two-tower models)
    from models.evaluate import run_report
    from models.evaluate.registry import available_models

    names = "all" if model_names == "all" else [m.strip() for m in model_names.split(",") if m.strip()]
    if names != "all":
        unknown = sorted(set(names) - set(available_models()))
        if unknown:
            raise click.BadParameter(f"unknown model(s) {', '.join(unknown)}; known: "
                                     f"{', '.join(available_models())}", param_hint="--models")
    png = out.with_suffix(".png") if out else None
    await asyncio.to_thread(run_report, data, names, out, png)
    if out:
        _echo(f"wrote {out} and {png}")


@app.command(
    argument("action", type=click.Choice(["start", "status", "stop"])),
    option("--name", default=None, help="The experiment's name (start: required; status: only this one)."),
    option("--arm", "arms", multiple=True, metavar="NAME=VERSION:SHARE",
           help="start: an arm, at least two; the first is the control (e.g. --arm control=v1:0.8 "
                "--arm treatment=v2:0.2)."),
    option("--promote", default=None, metavar="ARM",
           help="stop: serve this arm's version to everyone from now on (the others' versions are dropped)."),
    option("--json", "as_json", is_flag=True, default=False, help="status: print the results as JSON."),
    base=ClientCommand,
)
async def experiment(self: AppCommand, action: str, name: str | None, arms: tuple[str, ...],
                     promote: str | None, as_json: bool) -> None:
    """A/B experiments between model versions: streamrec experiment start|status|stop.

    start announces the experiment on model-updates; every worker loads its arms' versions and
    assigns each user to an arm by a hash of the experiment's name and the user id. status prints
    each arm's online trials, hits and hit rate over all workers, with the difference to the
    control and its significance. stop serves everyone the version served outside the experiment
    (the newest announced) again, or with --promote the chosen arm's version, announced anew.
    """
    from stream.core.experiments import announcements_of, format_results, new_experiment, parse_arm_option
    from stream.errors import InvalidRecord
    from stream.kafka import experiments as kafka_experiments

    settings = get_settings()
    updates = await kafka_experiments.read_model_updates(settings)
    running = kafka_experiments.in_force(updates)
    if action == "status":
        found = await kafka_experiments.all_results(settings)
        if name is not None:
            found = [r for r in found if r["experiment"] == name]
            if not found:
                raise click.ClickException(f"no experiment named {name!r} on {settings.topic('model-updates')}")
        if as_json:
            _echo(json.dumps(found, indent=2))
            return
        if not found:
            _echo("no experiment has been started")
        for result in found:
            _echo("\n".join(format_results(result)))
        return
    if action == "start":
        if name is None or len(arms) < 2:
            raise click.UsageError("start needs --name and at least two --arm NAME=VERSION:SHARE")
        if running is not None:
            raise click.ClickException(f"experiment {running.name!r} is running: stop it first "
                                       "(streamrec experiment stop [--promote ARM])")
        try:
            started = new_experiment(name, [parse_arm_option(a) for a in arms], int(time.time() * 1000))
        except InvalidRecord as e:
            raise click.UsageError(f"{e.reason}: {e.detail}") from None
        announced = {a.version for a in announcements_of(updates)}
        missing = [v for v in started.versions() if v not in announced]
        if missing:
            raise click.ClickException(f"versions never announced on {settings.topic('model-updates')}: "
                                       f"{', '.join(missing)} (the trainer announces what it publishes)")
        await asyncio.to_thread(_verify_versions, settings, started.versions())
        await asyncio.to_thread(kafka_experiments.publish_experiment, settings, started)
        _echo(f"started experiment {name}: " + ", ".join(f"{a.name}={a.version} ({a.share:.0%})" for a in started.arms))
        _echo("every worker serves it within seconds; results: streamrec experiment status")
        return
    if running is None or (name is not None and running.name != name):
        raise click.ClickException("no experiment is running" if running is None else
                                   f"the running experiment is {running.name!r}, not {name!r}")
    try:
        stopped = kafka_experiments.stop(running, promote)
    except KeyError:
        raise click.UsageError(f"--promote: {promote!r} is not an arm of {running.name} "
                               f"({', '.join(a.name for a in running.arms)})") from None
    await asyncio.to_thread(kafka_experiments.publish_experiment, settings, stopped)
    _echo(f"stopped experiment {running.name}" + (f"; serving {stopped.arm(promote).version} ({promote}) to everyone"
                                                  if promote else "; serving the default version to everyone"))
    counts = await kafka_experiments.read_counts(settings)
    _echo("\n".join(format_results(kafka_experiments.results(stopped, counts))))


def _verify_versions(settings: Any, versions: list[str]) -> None:
    """Refuse versions whose artifacts do not load and verify here (workers would refuse them too)."""
    from models.artifacts import ArtifactError, load_version

    key = settings.artifact_key.get_secret_value().encode() if settings.artifact_key is not None else None
    for version in versions:
        try:
            load_version(settings.artifacts_dir, version, key=key)
        except (ArtifactError, OSError) as e:
            raise click.ClickException(f"version {version} does not load and verify from "
                                       f"{settings.artifacts_dir}: {e}") from None
