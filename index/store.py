"""Versioned save and load of an index folder.

A saved index is a folder::

    index.faiss       faiss.write_index format of the CPU master (always a CPU copy)
    <name>.npy        extra arrays some backends need (HNSW tombstones)
    manifest.json     format version, index version, kind, factory string, metric,
                      dim, count, search parameters, config, build/save time,
                      faiss version, and the size and sha256 of every file above

Folders are written next to their destination under a temporary name and
renamed into place, so a reader never sees a half-written folder.

Loading treats the folder as untrusted until checked: the manifest is bounded in
size and may list only ``index.faiss`` and plain ``<name>.npy`` files; each file's
size is compared with the manifest before it is read and its sha256 after; the
index file's header (its faiss type for the manifest's ``kind``, dimension and
vector count) must agree with the manifest; and faiss' deserialization limits
(``faiss.set_deserialization_vector_byte_limit`` and ``..._loop_limit``) are set
from the file's size for the read, so no field of the file can make faiss
allocate or loop beyond what the file itself holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import struct
import threading
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
MAX_MANIFEST_BYTES = 1024 * 1024
# The faiss type each backend saves (the first four bytes of faiss.write_index's format).
FOURCC = {"flat": b"IxM2", "hnsw": b"IxMp", "ivf": b"IwFl", "ivfpq": b"IwPQ"}
_HEADER = struct.Struct("<4siq")  # fourcc, d (int32), ntotal (int64): every index's header
_EXTRA_FILE = re.compile(r"^[A-Za-z0-9_]{1,64}\.npy$")
_IVFPQ_FACTORY = re.compile(r"^IVF(\d+),PQ(\d+)x(\d+)$")
# faiss' deserialization limits are process-wide settings: one read at a time sets them.
_DESERIALIZE = threading.Lock()


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
        for name, entry in manifest.files.items():
            if name != INDEX_FILE and not (isinstance(name, str) and _EXTRA_FILE.match(name)):
                raise ManifestError(f"manifest lists {str(name)[:80]!r}: only {INDEX_FILE} and plain <name>.npy files")
            if type(entry.bytes) is not int or entry.bytes < 0 or not isinstance(entry.sha256, str):
                raise ManifestError(f"manifest has no size and sha256 for {name}")
        if type(manifest.dim) is not int or type(manifest.count) is not int or manifest.dim < 1 or manifest.count < 0:
            raise ManifestError(f"manifest dim={manifest.dim!r} count={manifest.count!r} are not sizes")
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


def read_manifest(folder: str | os.PathLike[str], *, sha256: str | None = None) -> Manifest:
    """Read and check ``folder/manifest.json`` (not the files' checksums).

    ``sha256``: the manifest file's own expected checksum (an enclosing artifact's
    manifest lists it); the bytes checked are the bytes parsed.
    """
    path = Path(folder) / MANIFEST_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e}") from e
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is over {MAX_MANIFEST_BYTES} bytes")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ChecksumMismatch(f"{path} sha256={hashlib.sha256(data).hexdigest()}, expected {sha256}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path} is not UTF-8: {e}") from e
    return Manifest.from_json(text)


def load_index(folder: str | os.PathLike[str], *, device: DeviceChoice | None = None,
               manifest_sha256: str | None = None) -> tuple[VectorIndex, Manifest]:
    """Load an index folder after verifying every file against the manifest.

    ``device`` overrides the saved config's device (a GPU-built index loads on
    a CPU-only host with ``"auto"`` or ``"cpu"``). ``manifest_sha256``: the
    manifest file's expected checksum, when an enclosing manifest lists it.
    Raises ManifestError or ChecksumMismatch (both StoreError) on any
    disagreement, StoreError when faiss cannot read the file within the limits
    (see the module docstring).
    """
    root = Path(folder)
    manifest = read_manifest(root, sha256=manifest_sha256)
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
    check_header(payloads[INDEX_FILE], manifest)
    try:
        faiss_index = _deserialize(payloads[INDEX_FILE], manifest)
        extras = {
            name.removesuffix(".npy"): np.load(io.BytesIO(data), allow_pickle=False)
            for name, data in payloads.items()
            if name.endswith(".npy")
        }
    except (RuntimeError, ValueError, OSError) as e:
        raise StoreError(f"{root}: files match the manifest but cannot be read: {e}") from e
    if int(faiss_index.d) != manifest.dim:
        raise ManifestError(f"index file holds dim={faiss_index.d}, manifest says dim={manifest.dim}")
    index = backend.restore(faiss_index, extras, config)
    if index.dim != manifest.dim or len(index) != manifest.count:
        raise ManifestError(
            f"index holds dim={index.dim} count={len(index)}, manifest says dim={manifest.dim} count={manifest.count}"
        )
    index._built_at = datetime.fromisoformat(manifest.built_at).timestamp()
    log.info("index loaded path=%s version=%s kind=%s count=%d device=%s", root, manifest.index_version, manifest.kind, len(index), index.device)
    return index, manifest


def check_header(data: bytes, manifest: Manifest) -> None:
    """The index file's header against the manifest, before faiss reads it: the faiss type
    that ``kind`` saves, the dimension, and a vector count that the manifest's count and the
    file's size allow (HNSW keeps removed items as tombstones: at least ``count``)."""
    if len(data) < _HEADER.size:
        raise ManifestError(f"index file has {len(data)} bytes: shorter than a faiss header")
    fourcc, dim, ntotal = _HEADER.unpack_from(data)
    expected = FOURCC.get(manifest.kind)
    if fourcc != expected:
        raise ManifestError(f"index file is faiss type {fourcc!r}, kind={manifest.kind} saves {expected!r}")
    if dim != manifest.dim:
        raise ManifestError(f"index file header says dim={dim}, manifest says dim={manifest.dim}")
    if not (ntotal == manifest.count or (manifest.kind == "hnsw" and ntotal >= manifest.count)) or ntotal > len(data):
        raise ManifestError(f"index file header says ntotal={ntotal}, manifest says count={manifest.count} "
                            f"in a file of {len(data)} bytes")


def deserialization_limits(data: bytes, manifest: Manifest) -> tuple[int, int]:
    """``(vector byte limit, loop limit)`` for reading ``data``: no array faiss reads can be
    larger than the file, and no loop (lists, levels) longer; IVF-PQ also builds its
    precomputed table (``nlist * M * 2**nbits`` floats, not stored) within the limit."""
    vector_bytes = len(data) + 1  # faiss checks size < limit
    if manifest.kind == "ivfpq":
        match = _IVFPQ_FACTORY.match(manifest.factory)
        if match is None:
            raise ManifestError(f"ivfpq manifest factory {manifest.factory!r} is not IVF<n>,PQ<m>x<bits>")
        nlist, m, nbits = (int(g) for g in match.groups())
        if nbits > 16 or nlist > len(data):
            raise ManifestError(f"ivfpq manifest factory {manifest.factory!r} does not fit a {len(data)}-byte file")
        vector_bytes = max(vector_bytes, (nlist * m * (1 << nbits) + 1) * 4)  # faiss checks elems < limit / 4
    return vector_bytes, len(data) + 1


def _deserialize(data: bytes, manifest: Manifest) -> Any:
    vector_bytes, loops = deserialization_limits(data, manifest)
    if not hasattr(faiss, "set_deserialization_loop_limit"):  # releases before 2026 have neither limit
        log.warning("faiss %s sets no deserialization limits: only the header and size checks apply",
                    faiss.__version__)
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    with _DESERIALIZE:
        before = faiss.get_deserialization_vector_byte_limit(), faiss.get_deserialization_loop_limit()
        faiss.set_deserialization_vector_byte_limit(vector_bytes)
        faiss.set_deserialization_loop_limit(loops)
        try:
            return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        finally:
            faiss.set_deserialization_vector_byte_limit(before[0])
            faiss.set_deserialization_loop_limit(before[1])


def _read_verified(path: Path, entry: FileEntry) -> bytes:
    try:
        if path.is_symlink() or not path.is_file():
            raise ChecksumMismatch(f"{path} is missing or not a regular file")
        size = path.stat().st_size
        if size != entry.bytes:  # before reading: a huge file is never read into memory
            raise ChecksumMismatch(f"{path} has {size} bytes, manifest says {entry.bytes} (truncated or replaced)")
        with open(path, "rb") as f:
            data = f.read(entry.bytes + 1)
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
