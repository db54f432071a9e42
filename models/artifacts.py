"""Versioned, self-describing model artifacts with a checksummed, optionally signed manifest.

Layout of one version folder (``<artifacts_dir>/<version>``)::

    manifest.json         format, version, created time, counts (items, users, dim),
                          {file: {sha256, bytes}} for every other file, and with a key
                          an HMAC-SHA256 signature over all of that
    config.json           the tower spec (architecture and sizes: enough to rebuild the towers)
                          and the training settings (provenance)
    weights.safetensors   plain tensors (safetensors: the only weights format read)
    items.json users.json id maps (index order)
    features/text.*       the fitted text featurizer, JSON + npz (absent for id-only models)
    item_embeddings.npy   float32 (n_items, dim), row = item index
    metrics.json          training and validation metrics
    index/                optional, written by the ``index_builder`` hook

Loading a version (:func:`load_version`) refuses, with an :class:`ArtifactError`
whose ``reason`` says why: a version name that is not a plain name, a folder
that does not resolve inside the artifacts folder (symlinks resolved), a manifest
whose version is not the one asked for, a manifest unsigned or mis-signed when a
key is given, any file that is missing, altered, unlisted or a symlink, weights
in any format but safetensors, and id maps, vectors and tower sizes that
disagree. Nothing is unpickled: weights load with ``safetensors``, arrays with
``np.load(allow_pickle=False)``, and the towers' sizes are checked against the
weights (on PyTorch's ``meta`` device) before any memory is allocated for them.

Serving loads a version with the towers and features alone: nothing here imports
:mod:`models.train`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load_bytes
from safetensors.torch import save_file as _st_save

from models.data.dataset import IdMap
from models.errors import ModelsError
from models.features.content import Featurizer, load_featurizer
from models.towers.config import TowerConfig
from models.towers.loaded import LoadedModel
from models.towers.model import TwoTower

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
SIGNATURE_ALG = "HMAC-SHA256"
# The same rule as stream.core.announcements.VERSION_PATTERN (a test keeps them equal):
# models may not import stream, and the trainer and the worker both load through here.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # some 30,000 files; ours have about ten
MAX_JSON_BYTES = 512 * 1024 * 1024  # id maps of a large catalogue; a bound on what is read into memory
REQUIRED_FILES = ("config.json", "items.json", "users.json", "item_embeddings.npy", "metrics.json", WEIGHTS)

IndexBuilder = Callable[[np.ndarray, tuple[str, ...], Path], None]


class ArtifactError(ModelsError):
    """A version is missing, malformed, of an unknown format or refused; ``reason`` names why
    (one of :data:`REASONS`), for the worker's log line and the caller's choice."""

    reason = "malformed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ArtifactChecksumError(ArtifactError):
    """A file of an artifact does not match the manifest (tampered, truncated or missing)."""

    reason = "checksum"


class ArtifactSignatureError(ArtifactError):
    """The manifest is unsigned or its signature does not verify with the key."""

    reason = "bad_signature"


# Every reason an ArtifactError may carry.
REASONS = ("bad_version", "not_found", "outside_artifacts_dir", "version_mismatch", "unsigned", "bad_signature",
           "checksum", "unlisted_file", "not_safetensors", "size_mismatch", "malformed")


class Exportable(Protocol):
    """What :func:`save_artifact` writes (``models.train.TrainedModel`` is one; serving never imports it).

    ``config``: a dataclass of the training settings, recorded as ``train_config``;
    ``item_embeddings``: float32 (n_items, dim), row = index in ``items``.
    """

    config: Any
    model: TwoTower
    items: IdMap
    users: IdMap
    item_embeddings: np.ndarray
    featurizer: Featurizer | None
    metrics: dict[str, Any]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_version_name(version: Any) -> str:
    """``version`` if it is a plain version name (never a path); raises ``ArtifactError(reason="bad_version")``."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ArtifactError(f"version {str(version)[:40]!r} is not a plain name", "bad_version")
    return version


# --- signing ------------------------------------------------------------------------
def canonical_manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its ``signature``, as sorted compact ASCII JSON.

    The manifest holds every other file's size and sha256, so these bytes cover the whole version.
    Signing what was parsed (not the file's own bytes) means whitespace or key order never matter,
    and a duplicated key cannot make the signed and the used values differ.
    """
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def manifest_signature(manifest: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of :func:`canonical_manifest_bytes` with ``key``."""
    return hmac.new(key, canonical_manifest_bytes(manifest), hashlib.sha256).hexdigest()


def sign_manifest(manifest: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``manifest`` with its ``signature``: ``{"alg": "HMAC-SHA256", "hex": ...}``."""
    if not key:
        raise ArtifactError("an empty signing key signs nothing", "unsigned")
    return {**manifest, "signature": {"alg": SIGNATURE_ALG, "hex": manifest_signature(manifest, key)}}


def check_signature(manifest: dict[str, Any], key: bytes | None) -> bool:
    """Verify ``manifest``'s signature with ``key``; returns whether one was checked.

    With ``key`` (``STREAMREC_ARTIFACT_KEY``) an unsigned or mis-signed manifest raises
    :class:`ArtifactSignatureError` (constant-time comparison). Without a key nothing can be
    checked (an HMAC needs the key to verify): a signature present is ignored, and integrity
    rests on the checksums alone, which whoever can write the folder can rewrite.
    """
    if not key:
        return False
    signature = manifest.get("signature")
    if signature is None:
        raise ArtifactSignatureError("manifest is unsigned and a key is set", "unsigned")
    given = signature.get("hex") if isinstance(signature, dict) else None
    if not isinstance(signature, dict) or signature.get("alg") != SIGNATURE_ALG or not isinstance(given, str):
        raise ArtifactSignatureError(f"manifest signature is not {SIGNATURE_ALG}")
    if not hmac.compare_digest(given.encode("ascii", "replace"), manifest_signature(manifest, key).encode("ascii")):
        raise ArtifactSignatureError("manifest signature does not verify with the key")
    return True


# --- saving -------------------------------------------------------------------------
def save_artifact(
    trained: Exportable,
    root: str | Path,
    version: str | None = None,
    index_builder: IndexBuilder | None = None,
    key: bytes | None = None,
) -> Path:
    """Write ``trained`` to ``root/<version>`` (default: a UTC timestamp) and return that folder.

    ``index_builder(item_embeddings, item_ids, folder)`` may write an index into
    ``folder`` (``<version>/index``), e.g. a wrapper over ``index.build_index`` and
    ``index.save_index``; its files are checksummed with the rest. With ``key``
    the manifest is signed (:func:`sign_manifest`). The version appears only when
    complete (written to a temporary folder, then renamed).
    """
    root = Path(root)
    version = check_version_name(version or time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime()))
    final = root / version
    if final.exists() or final.is_symlink():
        raise ArtifactError(f"artifact version already exists: {final}")
    embeddings = np.ascontiguousarray(trained.item_embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(trained.items.ids):
        raise ArtifactError(f"item_embeddings shape {embeddings.shape} does not match {len(trained.items.ids)} items",
                            "size_mismatch")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        _st_save(state, str(tmp / WEIGHTS))
        featurizer = None
        if trained.featurizer is not None:
            (tmp / "features").mkdir()
            trained.featurizer.save(tmp / "features" / "text")
            featurizer = {"kind": trained.featurizer.kind, "path": "features/text"}
        config = {
            "format": FORMAT_VERSION,
            "weights": WEIGHTS,
            "featurizer": featurizer,
            "train_config": dataclasses.asdict(trained.config),
            "tower_spec": trained.model.spec,
        }
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "items.json", trained.items.to_json())
        _write_json(tmp / "users.json", trained.users.to_json())
        np.save(tmp / "item_embeddings.npy", embeddings, allow_pickle=False)
        _write_json(tmp / "metrics.json", trained.metrics)
        if index_builder is not None:
            (tmp / "index").mkdir()
            index_builder(trained.item_embeddings, tuple(trained.items.ids), tmp / "index")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "version": version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "counts": {"items": len(trained.items.ids), "users": len(trained.users.ids),
                       "dim": int(embeddings.shape[1])},
            "files": {
                p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files
            },
        }
        if key:
            manifest = sign_manifest(manifest, key)
        _write_json(tmp / MANIFEST, manifest)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("artifact_saved path=%s files=%d signed=%s", final, len(manifest["files"]), bool(key))
    return final


# --- finding and verifying ------------------------------------------------------------
def resolve_version(root: str | Path, version: str) -> Path:
    """The folder of ``version`` under ``root``, symlinks resolved; it must lie inside ``root``.

    Raises :class:`ArtifactError` with reason ``bad_version`` (not a plain name),
    ``not_found`` or ``outside_artifacts_dir`` (a symlink, or a link above it, that leads out).
    """
    check_version_name(version)
    try:
        base = Path(root).resolve(strict=True)
    except OSError as e:
        raise ArtifactError(f"artifacts folder {root} is unreadable: {e}", "not_found") from e
    try:
        folder = (base / version).resolve(strict=True)
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise ArtifactError(f"version {version} not found in {base}: {e}", "not_found") from e
    if folder == base or not folder.is_relative_to(base):
        raise ArtifactError(f"version {version} resolves to {folder}, outside {base}", "outside_artifacts_dir")
    if not folder.is_dir():
        raise ArtifactError(f"version {version} is not a folder: {folder}", "not_found")
    return folder


def read_manifest(path: str | Path, version: str | None = None, key: bytes | None = None) -> dict[str, Any]:
    """Read and check ``path/manifest.json`` (not the files' checksums): its format, that its
    version is ``version`` (when given), its signature with ``key`` (when given) and that every
    file it lists is a plain relative name with a size and a sha256. Raises :class:`ArtifactError`."""
    path = Path(path)
    file = path / MANIFEST
    try:
        if file.is_symlink():
            raise ArtifactError(f"{file} is a symlink", "unlisted_file")
        with open(file, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"manifest in {path} is over {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(raw)
    except ArtifactError:
        raise
    except FileNotFoundError as e:
        raise ArtifactError(f"no manifest in {path}", "not_found") from e
    except (OSError, ValueError, RecursionError) as e:
        raise ArtifactError(f"unreadable manifest in {path}: {e}") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest in {path} is not a JSON object")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"unknown artifact format={str(manifest.get('format'))[:20]!r} in {path}")
    if version is not None and manifest.get("version") != version:
        raise ArtifactError(f"manifest in {path} names version {str(manifest.get('version'))[:140]!r}, "
                            f"announced {version!r}", "version_mismatch")
    check_signature(manifest, key)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"manifest in {path} lists no files")
    for name, meta in files.items():
        if not _plain_relative(name) or name == MANIFEST:
            raise ArtifactError(f"manifest in {path} lists {str(name)[:80]!r}: not a plain relative file name")
        if (not isinstance(meta, dict) or type(meta.get("bytes")) is not int or meta["bytes"] < 0
                or not isinstance(meta.get("sha256"), str) or not _SHA256.match(meta["sha256"])):
            raise ArtifactError(f"manifest in {path} has no size and sha256 for {name}")
    counts = manifest.get("counts")
    if counts is not None and (not isinstance(counts, dict) or not all(
            type(counts.get(k)) is int and counts[k] >= 0 for k in ("items", "users", "dim"))):
        raise ArtifactError(f"manifest in {path} has malformed counts")
    return manifest


def verify_artifact(path: str | Path, version: str | None = None, key: bytes | None = None) -> dict[str, Any]:
    """Check the manifest (:func:`read_manifest`) and every file against it; returns the manifest.

    The folder must hold exactly the listed files and the manifest: a file missing,
    of another size or sha256 raises :class:`ArtifactChecksumError`; a file not
    listed (a stray ``weights.pt``) or a symlink anywhere in the folder raises
    ``ArtifactError(reason="unlisted_file")``, so a loader never reads an unchecked byte.
    """
    path = Path(path)
    manifest = read_manifest(path, version, key)
    files = manifest["files"]
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            raise ArtifactError(f"artifact holds a symlink: {p}", "unlisted_file")
        if p.is_file() and rel != MANIFEST and rel not in files:
            raise ArtifactError(f"artifact holds a file its manifest does not list: {p}", "unlisted_file")
    for name, meta in files.items():
        _check_file(path / name, meta)
    return manifest


def _plain_relative(name: Any) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    pure = PurePosixPath(name)
    return not pure.is_absolute() and all(part not in ("", ".", "..") for part in name.split("/"))


def _check_file(p: Path, meta: dict[str, Any]) -> None:
    if p.is_symlink() or not p.is_file():
        raise ArtifactChecksumError(f"artifact file missing: {p}")
    size = p.stat().st_size
    if size != meta["bytes"]:
        raise ArtifactChecksumError(f"artifact file truncated or grown: {p} bytes={size} expected={meta['bytes']}")
    digest = sha256_file(p)
    if digest != meta["sha256"]:
        raise ArtifactChecksumError(f"artifact checksum mismatch: {p} sha256={digest} expected={meta['sha256']}")


def _read_checked(path: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """The bytes of listed file ``name``, read once and checked against the manifest (what is
    parsed is what was checked, even if the file changes on disk afterwards)."""
    meta = manifest["files"].get(name)
    if meta is None:
        raise ArtifactError(f"manifest in {path} does not list {name}", "malformed")
    p = path / name
    if meta["bytes"] > MAX_JSON_BYTES and name.endswith(".json"):
        raise ArtifactError(f"{p} is over {MAX_JSON_BYTES} bytes")
    try:
        with open(p, "rb") as f:
            data = f.read(meta["bytes"] + 1)
    except OSError as e:
        raise ArtifactChecksumError(f"artifact file unreadable: {p}: {e}") from e
    if len(data) != meta["bytes"]:
        raise ArtifactChecksumError(f"artifact file truncated or grown: {p} bytes={len(data)} expected={meta['bytes']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ArtifactChecksumError(f"artifact checksum mismatch: {p} sha256={digest} expected={meta['sha256']}")
    return data


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ArtifactError(f"{what} is not JSON: {e}") from e


# --- loading ------------------------------------------------------------------------
def load_version(root: str | Path, version: str, key: bytes | None = None) -> LoadedModel:
    """Load ``version`` of the artifacts folder ``root``: what the worker and the trainer do.

    The folder must resolve inside ``root`` (:func:`resolve_version`), its manifest
    must name ``version`` and, with ``key``, be signed with it; then :func:`load_artifact`.
    """
    return load_artifact(resolve_version(root, version), version=version, key=key)


def load_artifact(path: str | Path, version: str | None = None, key: bytes | None = None) -> LoadedModel:
    """Verify the folder (:func:`verify_artifact`: manifest, signature with ``key``, every file),
    then rebuild the towers on CPU in eval mode from safetensors weights.

    Raises :class:`ArtifactError` (its ``reason`` says why) on any disagreement: weights
    other than ``weights.safetensors``, tower sizes that disagree with the weights, id
    maps that disagree with the item vectors or the manifest's counts.
    """
    path = Path(path)
    manifest = verify_artifact(path, version, key)
    config = _json(_read_checked(path, "config.json", manifest), "config.json")
    if not isinstance(config, dict) or not isinstance(config.get("tower_spec"), dict):
        raise ArtifactError(f"config.json in {path} has no tower_spec")
    if config.get("weights") != WEIGHTS:
        # weights.pt (torch.save, a pickle) was written before safetensors was required: never read.
        raise ArtifactError(f"artifact weights {str(config.get('weights'))[:60]!r} are not {WEIGHTS}; "
                            "no other format is read", "not_safetensors")
    items = _id_map(_read_checked(path, "items.json", manifest), "items.json")
    users = _id_map(_read_checked(path, "users.json", manifest), "users.json")
    try:
        embeddings = np.load(io.BytesIO(_read_checked(path, "item_embeddings.npy", manifest)), allow_pickle=False)
    except ValueError as e:  # allow_pickle=False refuses object arrays with a ValueError
        raise ArtifactError(f"item_embeddings.npy in {path} is not a plain array: {e}") from e
    if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape[0] != len(items.ids):
        raise ArtifactError(f"item_embeddings {embeddings.dtype} {embeddings.shape} disagree with "
                            f"{len(items.ids)} items", "size_mismatch")
    counts = manifest.get("counts")
    if counts is not None and (counts["items"], counts["users"], counts["dim"]) != (
            len(items.ids), len(users.ids), embeddings.shape[1]):
        raise ArtifactError(f"manifest counts {counts} disagree with items={len(items.ids)} users={len(users.ids)} "
                            f"dim={embeddings.shape[1]}", "size_mismatch")
    weights = _read_checked(path, WEIGHTS, manifest)
    try:
        state = _st_load_bytes(weights)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{WEIGHTS} in {path} is not a safetensors file: {e}", "not_safetensors") from e
    spec = config["tower_spec"]
    model = _build_towers(spec, state, len(items.ids), embeddings.shape[1], len(weights), path)
    featurizer = None
    if config.get("featurizer"):
        featurizer = _load_featurizer(path, config["featurizer"], manifest)
    try:
        tower_config = TowerConfig.from_spec(spec)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"tower_spec in {path} is invalid: {e}") from e
    return LoadedModel(
        path=path,
        config=tower_config,
        model=model,
        items=items,
        users=users,
        item_embeddings=embeddings,
        featurizer=featurizer,
        metrics=_json(_read_checked(path, "metrics.json", manifest), "metrics.json"),
        manifest=manifest,
        train_config=dict(config.get("train_config") or {}),
    )


def _id_map(data: bytes, what: str) -> IdMap:
    try:
        return IdMap.from_json(_json(data, what))
    except ModelsError as e:
        raise ArtifactError(f"{what}: {e}") from e


def _build_towers(spec: dict[str, Any], state: dict[str, torch.Tensor], n_items: int, dim: int,
                  weights_bytes: int, path: Path) -> TwoTower:
    """The towers of ``spec`` with ``state`` loaded, checked before any real allocation:
    the spec's sizes must match the item vectors, and a copy built on the ``meta`` device
    (no memory) must have exactly the tensors of ``state``, names, shapes and dtypes."""
    try:
        n_features = int(spec.get("n_features", 0))
        if int(spec["n_items"]) != n_items or int(spec["dim"]) != dim:
            raise ArtifactError(f"tower_spec n_items={spec['n_items']} dim={spec['dim']} disagree with the item "
                                f"vectors ({n_items}, {dim})", "size_mismatch")
        if n_features < 0 or (n_items + 1) * n_features * 4 > weights_bytes:
            raise ArtifactError(f"tower_spec n_features={n_features} is larger than the weights hold", "size_mismatch")
        # Building even on the meta device takes time per layer: no size may exceed what the
        # weights hold (elements in all, one tensor at least per layer or dilation).
        numel = sum(t.numel() for t in state.values())
        for name, value in spec.items():
            if (type(value) is int and not 0 <= value <= numel) or (
                    isinstance(value, list) and len(value) > len(state)) or (
                    name == "n_layers" and type(value) is int and value > len(state)):
                raise ArtifactError(f"tower_spec {name}={str(value)[:40]} is larger than the weights hold",
                                    "size_mismatch")
        with torch.device("meta"):
            probe = TwoTower(spec)
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise ArtifactError(f"tower_spec in {path} is invalid: {e}") from e
    expected = {k: (tuple(v.shape), v.dtype) for k, v in probe.state_dict().items()}
    got = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:3]
        raise ArtifactError(f"weights in {path} do not fit tower_spec: {diff}", "size_mismatch")
    model = TwoTower(spec)
    model.load_state_dict(state)
    model.eval()
    return model


def _load_featurizer(path: Path, entry: Any, manifest: dict[str, Any]) -> Featurizer:
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str) or not _plain_relative(entry.get("path")):
        raise ArtifactError(f"config.json in {path} has a malformed featurizer entry")
    # Its files were verified with the rest, and verify_artifact refuses unlisted ones.
    if f"{entry['path']}.json" not in manifest["files"]:
        raise ArtifactError(f"manifest in {path} does not list the featurizer {entry['path']}.json")
    try:
        return load_featurizer(entry["kind"], path / entry["path"])
    except (ModelsError, OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"featurizer in {path} does not load: {e}") from e


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=float), encoding="utf-8")
