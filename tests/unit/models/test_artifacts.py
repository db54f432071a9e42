"""Artifact round trip, checksum refusal (tampered byte, truncated file), the index hook,
and that loading one (what the worker does) needs nothing of the training loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.artifacts import ArtifactChecksumError, ArtifactError, load_artifact, save_artifact
from models.errors import ModelsError
from models.train.config import TrainConfig
from models.train.demo import demo_split
from models.train.loop import train_two_tower


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    split = demo_split(n_users=60, n_items=40)
    cfg = TrainConfig(tower="gru", dim=8, max_len=10, epochs=1, max_steps=2, content="tfidf", progress=False)
    return train_two_tower(split, cfg)


def test_round_trip(trained, tmp_path: Path) -> None:
    seen: dict = {}

    def index_builder(vectors: np.ndarray, ids: tuple[str, ...], folder: Path) -> None:
        seen["shape"] = vectors.shape
        (folder / "index.bin").write_bytes(b"fake-index")

    path = save_artifact(trained, tmp_path, version="v1", index_builder=index_builder)
    assert seen["shape"] == trained.item_embeddings.shape
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"config.json", "items.json", "item_embeddings.npy", "index/index.bin", "metrics.json"} <= set(manifest["files"])
    loaded = load_artifact(path)
    np.testing.assert_array_equal(loaded.item_embeddings, trained.item_embeddings)
    np.testing.assert_allclose(loaded.model.item_vectors(), trained.item_embeddings, rtol=1e-6, atol=1e-6)
    history = np.array([1, 2, 3])
    np.testing.assert_allclose(loaded.encode_user(history), trained.model.user_tower.encode(history), rtol=1e-6, atol=1e-6)
    # The artifact describes its architecture itself; the training settings travel with it as JSON.
    assert loaded.items == trained.items and loaded.config == trained.config.tower_config()
    assert TrainConfig(**loaded.train_config) == trained.config
    cold = loaded.cold_item_vectors(["a jazz track: saxophone swing"])
    assert cold.shape == (1, 8) and np.abs(cold).sum() > 0
    with pytest.raises(ArtifactError):
        save_artifact(trained, tmp_path, version="v1")


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete"])
def test_checksum_refusal(trained, tmp_path: Path, damage: str) -> None:
    path = save_artifact(trained, tmp_path, version="v2")
    weights = next(path.glob("weights.*"))
    data = bytearray(weights.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[:-10]))
    else:
        weights.unlink()
    with pytest.raises(ArtifactChecksumError) as err:
        load_artifact(path)
    assert isinstance(err.value, ModelsError)


def test_unreadable_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError):
        load_artifact(tmp_path)


def test_loading_imports_nothing_of_training() -> None:
    # The worker imports models.artifacts to load versions: serving and training stay apart.
    code = ("import sys, models.artifacts; from models.artifacts import load_artifact, LoadedModel; "
            "bad = sorted(m for m in sys.modules if m == 'models.train' or m.startswith('models.train.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stdout + done.stderr
