"""The model-updates topic's record: a trained version announced to every worker.

::

    {"version": "v20261201T101500Z", "created_ms": 1764584100000,
     "metrics": {"ndcg@10": 0.1844, "hr@10": 0.31}, "tower": "sasrec",
     "users": 2999, "items": 3706, "path": "/srv/artifacts/v20261201T101500Z"}

``version`` names a folder of the artifacts directory; it is a plain name
(letters, digits, ``.``, ``_``, ``-``; never a path), matched in full. ``path``
is where the trainer wrote it, for information only: no reader loads from it
(``models.artifacts.load_version`` reads ``<artifacts_dir>/<version>`` alone).
Other fields are kept as written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.core.codec import decode_object
from stream.core.state import dumps
from stream.errors import InvalidRecord

MAX_ANNOUNCEMENT_BYTES = 64 * 1024
MAX_VERSION_CHARS = 128
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)
_KNOWN = ("version", "created_ms", "metrics", "path", "tower", "users", "items")


class InvalidAnnouncement(InvalidRecord):
    """A record of the model-updates topic could not be decoded or validated."""


@dataclass(frozen=True)
class ModelAnnouncement:
    """A validated announcement. Construct with :func:`parse_announcement` or directly."""

    version: str
    created_ms: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    path: str | None = None
    tower: str | None = None
    users: int | None = None
    items: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_version(self.version)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, "version": self.version, "created_ms": self.created_ms,
                               "metrics": dict(self.metrics)}
        for name in ("path", "tower", "users", "items"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def encode(self) -> bytes:
        return dumps(self.to_dict())


def check_version(version: Any) -> str:
    """``version`` if it is a plain version name (never a path); raises :class:`InvalidAnnouncement`."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InvalidAnnouncement("bad_version", f"version {str(version)[:40]!r} is not a plain name "
                                  f"(letters, digits, '.', '_', '-'; 1 to {MAX_VERSION_CHARS} characters)")
    return version


def parse_announcement(raw: bytes | bytearray | str | Mapping[str, Any]) -> ModelAnnouncement:
    """Decode and validate one announcement; raises :class:`InvalidAnnouncement` with a ``reason``."""
    data = raw if isinstance(raw, Mapping) else decode_object(raw, MAX_ANNOUNCEMENT_BYTES, InvalidAnnouncement)
    if "version" not in data:
        raise InvalidAnnouncement("missing_field", "missing version")
    version = check_version(data["version"])
    created = data.get("created_ms", 0)
    if type(created) is not int or created < 0:
        raise InvalidAnnouncement("wrong_type", "created_ms must be a non-negative integer")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, Mapping) or not all(
            isinstance(k, str) and type(v) in (int, float) and math.isfinite(v) for k, v in metrics.items()):
        raise InvalidAnnouncement("wrong_type", "metrics must be an object of finite numbers")
    for name in ("path", "tower"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidAnnouncement("wrong_type", f"{name} must be a string")
    for name in ("users", "items"):
        if data.get(name) is not None and (type(data[name]) is not int or data[name] < 0):
            raise InvalidAnnouncement("wrong_type", f"{name} must be a non-negative integer")
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    return ModelAnnouncement(version, created, {k: float(v) for k, v in metrics.items()}, data.get("path"),
                             data.get("tower"), data.get("users"), data.get("items"), extra)


JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec model announcement",
    "description": "A trained model version, announced by the trainer on the model-updates topic (one "
                   "partition, keyed by version); every worker loads it from its artifacts folder.",
    "type": "object",
    "required": ["version", "created_ms"],
    "additionalProperties": True,
    "properties": {
        "version": {"type": "string", "pattern": VERSION_PATTERN},
        "created_ms": {"type": "integer", "minimum": 0},
        "metrics": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
        "path": {"type": ["string", "null"]},
        "tower": {"type": ["string", "null"]},
        "users": {"type": ["integer", "null"], "minimum": 0},
        "items": {"type": ["integer", "null"], "minimum": 0},
    },
    "x-max-bytes": MAX_ANNOUNCEMENT_BYTES,
}
