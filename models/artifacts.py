"""Versioned, self-describing model artifacts with a checksummed manifest.

Layout of one version folder::

    manifest.json         format, created time, {file: {sha256, bytes}} for every other file
    config.json           the tower spec (architecture and sizes: enough to rebuild the towers)
                          and the training settings (provenance)
    weights.safetensors   plain tensors (weights.pt, a plain state_dict, when safetensors is absent)
    items.json users.json id maps (index order)
    features/text.*       the fitted text featurizer, JSON + npz (absent for id-only models)
    item_embeddings.npy   float32 (n_items, dim), row = item index
    metrics.json          training and validation metrics
    index/                optional, written by the ``index_builder`` hook

Serving loads a version with the towers and features alone: nothing here imports
:mod:`models.train`. Nothing is unpickled: weights load with ``safetensors`` or
``torch.load(weights_only=True)``, arrays with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from models.data.dataset import IdMap
from models.errors import ModelsError
from models.features.content import Featurizer, load_featurizer
from models.towers.config import TowerConfig
from models.towers.loaded import LoadedModel
from models.towers.model import TwoTower

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"

try:  # safetensors is preferred; torch.save of plain tensors is the fallback.
    from safetensors.torch import load_file as _st_load
    from safetensors.torch import save_file as _st_save
except ImportError:  # pragma: no cover - depends on the environment
    _st_load = _st_save = None

IndexBuilder = Callable[[np.ndarray, tuple[str, ...], Path], None]


class ArtifactError(ModelsError):
    """An artifact folder is missing, malformed or of an unknown format."""


class ArtifactChecksumError(ArtifactError):
    """A file of an artifact does not match the manifest (tampered, truncated or missing)."""


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


def save_artifact(
    trained: Exportable,
    root: str | Path,
    version: str | None = None,
    index_builder: IndexBuilder | None = None,
) -> Path:
    """Write ``trained`` to ``root/<version>`` (default: a UTC timestamp) and return that folder.

    ``index_builder(item_embeddings, item_ids, folder)`` may write an index into
    ``folder`` (``<version>/index``), e.g. a wrapper over ``index.build_index`` and
    ``index.save_index``; its files are checksummed with the rest. The version
    appears only when complete (written to a temporary folder, then renamed).
    """
    root = Path(root)
    version = version or time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime())
    final = root / version
    if final.exists():
        raise ArtifactError(f"artifact version already exists: {final}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        weights = "weights.safetensors" if _st_save is not None else "weights.pt"
        if _st_save is not None:
            _st_save(state, str(tmp / weights))
        else:
            torch.save(state, tmp / weights)
        featurizer = None
        if trained.featurizer is not None:
            (tmp / "features").mkdir()
            trained.featurizer.save(tmp / "features" / "text")
            featurizer = {"kind": trained.featurizer.kind, "path": "features/text"}
        config = {
            "format": FORMAT_VERSION,
            "weights": weights,
            "featurizer": featurizer,
            "train_config": dataclasses.asdict(trained.config),
            "tower_spec": trained.model.spec,
        }
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "items.json", trained.items.to_json())
        _write_json(tmp / "users.json", trained.users.to_json())
        np.save(tmp / "item_embeddings.npy", np.ascontiguousarray(trained.item_embeddings, dtype=np.float32))
        _write_json(tmp / "metrics.json", trained.metrics)
        if index_builder is not None:
            (tmp / "index").mkdir()
            index_builder(trained.item_embeddings, tuple(trained.items.ids), tmp / "index")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT_VERSION,
            "version": version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {
                p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files
            },
        }
        _write_json(tmp / MANIFEST, manifest)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("artifact_saved path=%s files=%d", final, len(manifest["files"]))
    return final


def verify_artifact(path: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; returns the manifest or raises :class:`ArtifactChecksumError`."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"unreadable manifest in {path}: {e}") from e
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"unknown artifact format={manifest.get('format')!r} in {path}")
    for name, meta in files.items():
        p = path / name
        if not p.is_file():
            raise ArtifactChecksumError(f"artifact file missing: {p}")
        size = p.stat().st_size
        if size != meta["bytes"]:
            raise ArtifactChecksumError(f"artifact file truncated or grown: {p} bytes={size} expected={meta['bytes']}")
        digest = sha256_file(p)
        if digest != meta["sha256"]:
            raise ArtifactChecksumError(f"artifact checksum mismatch: {p} sha256={digest} expected={meta['sha256']}")
    return manifest


def load_artifact(path: str | Path) -> LoadedModel:
    """Verify checksums, then rebuild the towers on CPU in eval mode."""
    path = Path(path)
    manifest = verify_artifact(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    weights = path / config["weights"]
    if weights.suffix == ".safetensors":
        if _st_load is None:
            raise ArtifactError("artifact weights are safetensors but the safetensors package is not installed")
        state = _st_load(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    model = TwoTower(config["tower_spec"])
    model.load_state_dict(state)
    model.eval()
    featurizer = None
    if config.get("featurizer"):
        featurizer = load_featurizer(config["featurizer"]["kind"], path / config["featurizer"]["path"])
    return LoadedModel(
        path=path,
        config=TowerConfig.from_spec(config["tower_spec"]),
        model=model,
        items=IdMap.from_json(json.loads((path / "items.json").read_text(encoding="utf-8"))),
        users=IdMap.from_json(json.loads((path / "users.json").read_text(encoding="utf-8"))),
        item_embeddings=np.load(path / "item_embeddings.npy", allow_pickle=False),
        featurizer=featurizer,
        metrics=json.loads((path / "metrics.json").read_text(encoding="utf-8")),
        manifest=manifest,
        train_config=dict(config.get("train_config") or {}),
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=float), encoding="utf-8")
