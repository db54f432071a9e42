"""A/B experiments between model versions: arms, deterministic assignment, per-arm results.

An experiment serves two or more model versions at once. Each user is assigned to
one arm by a hash of the experiment's name and the user id, so every worker
(and every restart) assigns a user alike without sharing any state, and two
experiments assign independently. Shares need not be equal: ``control=0.8``,
``treatment=0.2``.

An arm's result is a proportion: trials (positive events of users who held a
recommendation of that arm just before) and hits (the event's item was in it).
:func:`compare` gives each arm's hit rate with its 95% Wilson interval and, for
each arm against the control (the first arm), the difference and a two-sided
two-proportion z-test.

Experiments are announced on ``model-updates`` beside the versions, keyed
``experiment:<name>``, as ``{"experiment": {...}}`` (:func:`experiment_record`)::

    {"experiment": {"name": "ndcg-v2",
                    "arms": [{"name": "control", "version": "v1", "share": 0.8},
                             {"name": "treatment", "version": "v2", "share": 0.2}],
                    "started_ms": 1764584100000, "stopped_ms": null, "promoted": null}}

The last experiment record in the topic's order is the one in force: a record
with ``stopped_ms`` stops it. A stop with ``promoted`` is also an announcement of
the promoted arm's version (:func:`promotion`), in the same record so that no
crash can stop the experiment without promoting: that version is then the
newest, and every worker (and the trainer's gate) serves it from then on.

A worker counts each arm's trials and hits per events partition, in a table of
its own (:func:`counts_key`, :func:`encode_counts`) whose changelog commits with
the events it counts; the results over all workers are the sums over every
partition's latest counts (:func:`sum_counts`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream.core.announcements import MAX_ANNOUNCEMENT_BYTES, ModelAnnouncement, check_version, parse_announcement
from stream.core.codec import decode_object
from stream.core.state import dumps
from stream.errors import InvalidRecord

MAX_ARMS = 8
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_SHARE_TOLERANCE = 1e-6
Z_95 = 1.959963984540054  # the two-sided 95% normal quantile


class InvalidExperiment(InvalidRecord):
    """An experiment definition that cannot be served."""


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    version: str
    share: float


@dataclass(frozen=True)
class Experiment:
    """A validated experiment. Construct with :func:`parse_experiment` or :func:`new_experiment`."""

    name: str
    arms: tuple[Arm, ...]
    started_ms: int
    stopped_ms: int | None = None
    promoted: str | None = None  # the arm whose version the stop made the served one

    def __post_init__(self) -> None:
        _check_name(self.name, "experiment")
        if not 2 <= len(self.arms) <= MAX_ARMS:
            raise InvalidExperiment("bad_arms", f"an experiment has 2 to {MAX_ARMS} arms, not {len(self.arms)}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise InvalidExperiment("bad_arms", f"arm names repeat: {names}")
        for arm in self.arms:
            _check_name(arm.name, "arm")
            try:
                check_version(arm.version)
            except InvalidRecord as e:
                raise InvalidExperiment(e.reason, f"arm {arm.name!r}: {e.detail}") from None
            if not (isinstance(arm.share, (int, float)) and math.isfinite(arm.share) and 0 < arm.share <= 1):
                raise InvalidExperiment("bad_share", f"arm {arm.name!r}: share must be in (0, 1], not {arm.share!r}")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise InvalidExperiment("bad_share", f"arm shares must sum to 1, not {total:g}")
        if self.promoted is not None and self.promoted not in names:
            raise InvalidExperiment("bad_arms", f"promoted arm {self.promoted!r} is not one of {names}")

    @property
    def running(self) -> bool:
        return self.stopped_ms is None

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def arm_of(self, user_id: str) -> Arm:
        """The arm ``user_id`` is served by: the same on every worker, run and restart."""
        point = assignment_point(self.name, user_id)
        cumulative = 0.0
        for arm in self.arms:
            cumulative += arm.share
            if point < cumulative:
                return arm
        return self.arms[-1]  # shares summing to 1 - 1e-7: the last arm takes the remainder

    def versions(self) -> list[str]:
        return list(dict.fromkeys(a.version for a in self.arms))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arms": [{"name": a.name, "version": a.version, "share": a.share}
                                            for a in self.arms],
                "started_ms": self.started_ms, "stopped_ms": self.stopped_ms, "promoted": self.promoted}


def assignment_point(experiment: str, user_id: str) -> float:
    """A number in [0, 1) fixed by the experiment's name and the user id (BLAKE2b, 64 bits)."""
    digest = hashlib.blake2b(f"{experiment}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def parse_arm_option(text: str) -> Arm:
    """``NAME=VERSION:SHARE`` (the command line's ``--arm``) as an :class:`Arm`."""
    name, sep, rest = text.partition("=")
    version, sep2, share = rest.rpartition(":")
    if not sep or not sep2 or not name or not version:
        raise InvalidExperiment("bad_arms", f"--arm takes NAME=VERSION:SHARE (e.g. control=v1:0.8), not {text!r}")
    try:
        value = float(share)
    except ValueError:
        raise InvalidExperiment("bad_share", f"arm {name!r}: share {share!r} is not a number") from None
    return Arm(name, version, value)


def new_experiment(name: str, arms: Sequence[Arm], now_ms: int) -> Experiment:
    return Experiment(name, tuple(arms), now_ms)


def parse_experiment(data: Any) -> Experiment:
    """Validate a decoded experiment object; raises :class:`InvalidExperiment` with a reason."""
    if not isinstance(data, Mapping):
        raise InvalidExperiment("not_an_object", "an experiment is a JSON object")
    arms = data.get("arms")
    if not isinstance(arms, list) or not all(isinstance(a, Mapping) for a in arms):
        raise InvalidExperiment("bad_arms", "arms must be a list of objects")
    if len(arms) > MAX_ARMS:
        raise InvalidExperiment("bad_arms", f"an experiment has 2 to {MAX_ARMS} arms, not {len(arms)}")
    started = data.get("started_ms")
    stopped = data.get("stopped_ms")
    for field_name, value in (("started_ms", started), ("stopped_ms", stopped)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InvalidExperiment("wrong_type", f"{field_name} must be a non-negative integer")
    if started is None:
        raise InvalidExperiment("missing_field", "missing started_ms")
    promoted = data.get("promoted")
    if promoted is not None and not isinstance(promoted, str):
        raise InvalidExperiment("wrong_type", "promoted must be an arm name or null")
    try:
        parsed = tuple(Arm(a.get("name"), a.get("version"), a.get("share")) for a in arms)
        return Experiment(data.get("name"), parsed, started, stopped, promoted)
    except InvalidRecord:
        raise
    except (TypeError, ValueError) as e:
        raise InvalidExperiment("bad_arms", f"arms do not validate: {e}") from None


def experiment_record(experiment: Experiment) -> tuple[bytes, bytes]:
    """The ``(key, value)`` of ``experiment``'s record on ``model-updates``."""
    return f"experiment:{experiment.name}".encode(), dumps({"experiment": experiment.to_dict()})


def promotion(experiment: Experiment) -> ModelAnnouncement | None:
    """The version announcement a stop with a promoted arm makes, at the stop's time; ``None`` otherwise."""
    if experiment.running or experiment.promoted is None:
        return None
    return ModelAnnouncement(experiment.arm(experiment.promoted).version, experiment.stopped_ms or 0,
                             extra={"promoted_by": experiment.name})


def announcements_of(updates: Iterable[ModelAnnouncement | Experiment]) -> list[ModelAnnouncement]:
    """The version announcements among ``model-updates`` records, promotions included, in order."""
    out: list[ModelAnnouncement] = []
    for update in updates:
        found = promotion(update) if isinstance(update, Experiment) else update
        if found is not None:
            out.append(found)
    return out


def parse_model_update(raw: bytes | bytearray | str | Mapping[str, Any]) -> ModelAnnouncement | Experiment:
    """A ``model-updates`` record: an experiment record (an object with ``experiment``) or a version
    announcement; raises :class:`InvalidRecord` (``InvalidExperiment``, ``InvalidAnnouncement``) with a reason."""
    data = raw if isinstance(raw, Mapping) else decode_object(raw, MAX_ANNOUNCEMENT_BYTES, InvalidExperiment)
    if "experiment" in data:
        return parse_experiment(data["experiment"])
    return parse_announcement(data)


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidExperiment("bad_name", f"{what} name {str(value)[:40]!r} is not a plain name "
                                "(letters, digits, '.', '_', '-'; 1 to 64 characters)")


# --- results ---------------------------------------------------------------------------
def wilson_interval(hits: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0, 1)`` without trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = hits / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if hits <= 0 else max(0.0, centre - half)  # exact at the ends, not 1e-17 off
    high = 1.0 if hits >= trials else min(1.0, centre + half)
    return low, high


def two_proportion_test(hits_a: int, trials_a: int, hits_b: int, trials_b: int) -> tuple[float, float, float]:
    """``(difference b - a, z, two-sided p-value)`` of the pooled two-proportion z-test
    (``p = 1`` when either side has no trials or both rates are 0 or 1)."""
    if trials_a <= 0 or trials_b <= 0:
        return 0.0, 0.0, 1.0
    pa, pb = hits_a / trials_a, hits_b / trials_b
    pooled = (hits_a + hits_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if se == 0:
        return pb - pa, 0.0, 1.0
    z = (pb - pa) / se
    return pb - pa, z, math.erfc(abs(z) / math.sqrt(2))


def compare(experiment: Experiment, counts: Mapping[str, tuple[int, int]], alpha: float = 0.05) -> dict[str, Any]:
    """Per-arm results from ``counts`` (arm name -> (trials, hits)), each arm against the control."""
    control = experiment.control
    c_trials, c_hits = counts.get(control.name, (0, 0))
    arms = []
    for arm in experiment.arms:
        trials, hits = counts.get(arm.name, (0, 0))
        low, high = wilson_interval(hits, trials)
        row: dict[str, Any] = {"arm": arm.name, "version": arm.version, "share": arm.share, "trials": trials,
                               "hits": hits, "hit_rate": hits / trials if trials else None,
                               "interval_95": [low, high]}
        if arm.name != control.name:
            diff, z, p = two_proportion_test(c_hits, c_trials, hits, trials)
            row |= {"difference": diff, "z": z, "p_value": p, "significant": p < alpha}
        arms.append(row)
    return {"experiment": experiment.name, "running": experiment.running, "control": control.name,
            "promoted": experiment.promoted, "arms": arms}


def format_results(result: dict[str, Any]) -> list[str]:
    """An experiment's results (:func:`compare`, or ``stream.kafka.experiments.results``) as table lines."""
    state = "running" if result["running"] else (
        f"stopped, promoted {result['promoted']}" if result["promoted"] else "stopped")
    counted = result.get("partitions_counted")
    where = f"; {len(counted)} partitions counted" if counted is not None else ""
    lines = [f"experiment {result['experiment']} ({state}{where})",
             f"  {'arm':<14} {'version':<22} {'share':>5} {'trials':>8} {'hits':>7} {'hit rate':>8} "
             f"{'95% interval':>15} {'diff':>8} {'p':>7}"]
    for arm in result["arms"]:
        rate = f"{arm['hit_rate']:.4f}" if arm["hit_rate"] is not None else "-"
        low, high = arm["interval_95"]
        diff = f"{arm['difference']:+.4f}" if "difference" in arm else "control"
        p = (f"{arm['p_value']:.4f}{'*' if arm['significant'] else ''}") if "p_value" in arm else ""
        lines.append(f"  {arm['arm']:<14} {arm['version'][:22]:<22} {arm['share']:>5.2f} {arm['trials']:>8} "
                     f"{arm['hits']:>7} {rate:>8} {f'[{low:.3f}, {high:.3f}]':>15} {diff:>8} {p:>7}")
    lines.append("  * significant at the 5% level (two-sided two-proportion z-test against the control)")
    return lines


_ARM_SCHEMA = {"type": "object", "required": ["name", "version", "share"], "properties": {
    "name": {"type": "string", "pattern": NAME_PATTERN},
    "version": {"type": "string"},
    "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}}

EXPERIMENT_SCHEMA: dict[str, Any] = {
    "title": "streamrec experiment record",
    "description": "An A/B experiment between model versions, started or stopped (keyed experiment:<name>); "
                   "the last experiment record is the one in force. Arm shares sum to 1; the first arm is "
                   "the control. A stop with promoted also announces that arm's version.",
    "type": "object",
    "required": ["experiment"],
    "properties": {"experiment": {
        "type": "object",
        "required": ["name", "arms", "started_ms"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "arms": {"type": "array", "minItems": 2, "maxItems": MAX_ARMS, "items": _ARM_SCHEMA},
            "started_ms": {"type": "integer", "minimum": 0},
            "stopped_ms": {"type": ["integer", "null"], "minimum": 0},
            "promoted": {"type": ["string", "null"]},
        },
    }},
}


# --- counts per events partition -------------------------------------------------------
MAX_COUNTS_BYTES = 16 * 1024


def counts_key(experiment: Experiment) -> bytes:
    """The counts table's key of ``experiment``: its name and start (a restarted name counts afresh)."""
    return f"{experiment.name}@{experiment.started_ms}".encode()


def encode_counts(counts: Mapping[str, tuple[int, int]]) -> bytes:
    """``{arm: (trials, hits)}`` as the counts table's value."""
    return dumps({arm: [int(t), int(h)] for arm, (t, h) in sorted(counts.items())})


def decode_counts(raw: bytes | bytearray | None) -> dict[str, tuple[int, int]]:
    """The counts in ``raw``; raises :class:`InvalidExperiment` (the changelog is writable by any client)."""
    data = decode_object(raw, MAX_COUNTS_BYTES, InvalidExperiment)
    out: dict[str, tuple[int, int]] = {}
    for arm, pair in data.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int and v >= 0 for v in pair)
                and pair[1] <= pair[0]):
            raise InvalidExperiment("bad_counts", f"arm {str(arm)[:40]!r}: counts must be [trials, hits], "
                                    "non-negative integers with hits <= trials")
        out[str(arm)] = (pair[0], pair[1])
    return out


def add_counts(counts: Mapping[str, tuple[int, int]], trials: Mapping[str, int],
               hits: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """``counts`` with a batch's ``trials`` and ``hits`` by arm added."""
    out = dict(counts)
    for arm, n in trials.items():
        t, h = out.get(arm, (0, 0))
        out[arm] = (t + n, h + hits.get(arm, 0))
    return out


def sum_counts(per_partition: Iterable[Mapping[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """Counts by arm summed over partitions."""
    total: dict[str, tuple[int, int]] = {}
    for counts in per_partition:
        for arm, (t, h) in counts.items():
            a, b = total.get(arm, (0, 0))
            total[arm] = (a + t, b + h)
    return total
