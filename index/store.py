"""Versioned save and load of an index folder.

A saved index is a folder::

    index.faiss       faiss.write_index format of the CPU master (always a CPU copy)
    <name>.npy        extra arrays some backends need (HNSW tombstones)
    manifest.json     format version, index version, kind, factory string, metric,
                      dim, count, search parameters, config, build/save time,
                      faiss version, and the size and sha256 of every file above

Folders are written next to their destination under a temporary name and
renamed into place, so a reader never sees a half-written folder. Loading checks
every file's size and sha256 before handing any byte to faiss.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.base import VectorIndex
from index.config import DeviceChoice, IndexConfig
from index.errors import ChecksumMismatch, ConfigError, ManifestError, StoreError
from index.factory import backend_for

__all__ = ["FORMAT_VERSION", "INDEX_FILE", "MANIFEST_FILE", "FileEntry", "Manifest", "load_index", "read_manifest", "save_index"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """Size in bytes and hex sha256 of one file of the folder."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` holds. ``sha256`` is the index file's checksum."""

    format_version: int
    index_version: str
    kind: str
    factory: str
    metric: str
    dim: int
    count: int
    search_params: dict[str, int]
    config: dict[str, Any]
    sha256: str
    files: dict[str, FileEntry]
    built_at: str
    saved_at: str
    faiss_version: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse and check ``manifest.json``; raises ManifestError."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest is not JSON: {e}") from e
        if not isinstance(raw, dict):
            raise ManifestError("manifest is not a JSON object")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ManifestError(f"manifest format_version={raw.get('format_version')!r}, this code reads {FORMAT_VERSION}")
        try:
            raw["files"] = {name: FileEntry(**entry) for name, entry in raw["files"].items()}
            manifest = cls(**raw)
        except (KeyError, TypeError, AttributeError) as e:
            raise ManifestError(f"manifest fields are missing or malformed: {e}") from e
        if INDEX_FILE not in manifest.files or manifest.files[INDEX_FILE].sha256 != manifest.sha256:
            raise ManifestError(f"manifest does not list {INDEX_FILE} with its sha256")
        return manifest


def save_index(index: VectorIndex, folder: str | os.PathLike[str], *, version: str | None = None, overwrite: bool = False) -> Manifest:
    """Write ``index`` to a new ``folder`` (see the module docstring); returns its manifest.

    ``version`` defaults to ``<UTC time>-<first 12 hex of the sha256>``. An existing
    folder raises StoreError unless ``overwrite``.
    """
    dest = Path(folder)
    if dest.exists() and not overwrite:
        raise StoreError(f"{dest} exists; pass overwrite=True to replace it")
    started = time.perf_counter()
    serialized, extras = index.export()
    payloads: dict[str, bytes] = {INDEX_FILE: serialized.tobytes()}
    for name, arr in extras.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        payloads[f"{name}.npy"] = buf.getvalue()
    files = {name: FileEntry(len(data), hashlib.sha256(data).hexdigest()) for name, data in payloads.items()}
    now = datetime.now(UTC)
    sha = files[INDEX_FILE].sha256
    description = index.describe()
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        index_version=version or f"{now:%Y%m%dT%H%M%S}Z-{sha[:12]}",
        kind=index.kind,
        factory=description["factory"],
        metric=description["metric"],
        dim=index.dim,
        count=description["count"],
        search_params=description["search_params"],
        config=index.config.to_dict(),
        sha256=sha,
        files=files,
        built_at=datetime.fromtimestamp(index.built_at, UTC).isoformat(),
        saved_at=now.isoformat(),
        faiss_version=faiss.__version__,
    )
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for name, data in payloads.items():
            _write_synced(tmp / name, data)
        _write_synced(tmp / MANIFEST_FILE, manifest.to_json().encode())
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "index saved path=%s version=%s kind=%s count=%d bytes=%d seconds=%.3f",
        dest, manifest.index_version, manifest.kind, manifest.count, files[INDEX_FILE].bytes, time.perf_counter() - started,
    )  # fmt: skip
    return manifest


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """Read and check ``folder/manifest.json`` (not the files' checksums)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e}") from e
    return Manifest.from_json(text)


def load_index(folder: str | os.PathLike[str], *, device: DeviceChoice | None = None) -> tuple[VectorIndex, Manifest]:
    """Load an index folder after verifying every file against the manifest.

    ``device`` overrides the saved config's device (a GPU-built index loads on
    a CPU-only host with ``"auto"`` or ``"cpu"``). Raises ManifestError or
    ChecksumMismatch (both StoreError) on any disagreement.
    """
    root = Path(folder)
    manifest = read_manifest(root)
    try:
        backend = backend_for(manifest.kind)
    except ConfigError as e:
        raise ManifestError(f"manifest kind is unknown: {e}") from e
    payloads = {name: _read_verified(root / name, entry) for name, entry in manifest.files.items()}
    try:
        config = IndexConfig.from_dict(manifest.config)
    except (ConfigError, TypeError) as e:
        raise ManifestError(f"manifest config is invalid: {e}") from e
    if device is not None:
        config = IndexConfig.from_dict({**config.to_dict(), "device": device})
    try:
        faiss_index = faiss.deserialize_index(np.frombuffer(payloads[INDEX_FILE], dtype=np.uint8))
        extras = {
            name.removesuffix(".npy"): np.load(io.BytesIO(data), allow_pickle=False)
            for name, data in payloads.items()
            if name.endswith(".npy")
        }
    except (RuntimeError, ValueError, OSError) as e:
        raise StoreError(f"{root}: files match the manifest but cannot be read: {e}") from e
    index = backend.restore(faiss_index, extras, config)
    if index.dim != manifest.dim or len(index) != manifest.count:
        raise ManifestError(
            f"index holds dim={index.dim} count={len(index)}, manifest says dim={manifest.dim} count={manifest.count}"
        )
    index._built_at = datetime.fromisoformat(manifest.built_at).timestamp()
    log.info("index loaded path=%s version=%s kind=%s count=%d device=%s", root, manifest.index_version, manifest.kind, len(index), index.device)
    return index, manifest


def _read_verified(path: Path, entry: FileEntry) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ChecksumMismatch(f"cannot read {path}: {e}") from e
    if len(data) != entry.bytes:
        raise ChecksumMismatch(f"{path} has {len(data)} bytes, manifest says {entry.bytes} (truncated or replaced)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ChecksumMismatch(f"{path} sha256={digest}, manifest says {entry.sha256}")
    return data


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_dir(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        os.rename(tmp, dest)
    else:
        # Directories cannot be renamed over non-empty ones: move the old aside first.
        trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, trash)
        os.rename(tmp, dest)
        shutil.rmtree(trash, ignore_errors=True)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
