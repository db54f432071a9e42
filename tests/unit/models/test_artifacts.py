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
from models.features.content import dense_features
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
    # sparse rows, a chunk at a time: the same vectors as the tower's dense content path
    texts = ["a jazz track: saxophone swing", "rock guitar anthem", "", "unknown words only", "jazz rock"]
    loaded.COLD_CHUNK = 2
    with torch.no_grad():
        dense = loaded.model.item_tower.from_content(dense_features(loaded.featurizer, texts)).numpy()
    np.testing.assert_allclose(loaded.cold_item_vectors(texts), dense, rtol=1e-5, atol=1e-6)
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


# --- refusals: what load_version (the worker's and the trainer's path) never loads ----------
import pickle  # noqa: E402
import shutil  # noqa: E402

from models.artifacts import (  # noqa: E402
    MANIFEST,
    VERSION_PATTERN,
    ArtifactSignatureError,
    load_version,
    resolve_version,
    sign_manifest,
)

KEY = b"k" * 32

from bench.faults.versions import remanifest  # noqa: E402  (what whoever can write the folder can do)




@pytest.fixture
def root(trained, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    save_artifact(trained, root, version="v1", key=KEY)
    return root


def refused(root: Path, version: str, reason: str, key: bytes | None = KEY) -> ArtifactError:
    with pytest.raises(ArtifactError) as err:
        load_version(root, version, key=key)
    assert err.value.reason == reason, err.value
    return err.value


def test_signed_version_loads_with_its_key_and_without_one(root: Path) -> None:
    manifest = json.loads((root / "v1" / MANIFEST).read_text())
    assert manifest["signature"]["alg"] == "HMAC-SHA256" and manifest["counts"]["dim"] == 8
    assert load_version(root, "v1", key=KEY).manifest["version"] == "v1"
    # Unset key (local runs): nothing can be checked, the checksums still are.
    assert load_version(root, "v1", key=None).manifest["version"] == "v1"


def test_unsigned_version_is_refused_with_a_key(trained, tmp_path: Path) -> None:
    save_artifact(trained, tmp_path, version="v1")
    assert "signature" not in json.loads((tmp_path / "v1" / MANIFEST).read_text())
    assert isinstance(refused(tmp_path, "v1", "unsigned"), ArtifactSignatureError)
    load_version(tmp_path, "v1", key=None)


def test_mis_signed_version_is_refused(root: Path) -> None:
    refused(root, "v1", "bad_signature", key=b"another key of 32 bytes........")
    manifest = json.loads((root / "v1" / MANIFEST).read_text())
    signature = manifest["signature"]["hex"]
    manifest["signature"]["hex"] = signature[:-1] + ("1" if signature[-1] == "0" else "0")  # always a change
    (root / "v1" / MANIFEST).write_text(json.dumps(manifest))
    refused(root, "v1", "bad_signature")


def test_tampered_file_re_listed_in_the_manifest_is_refused_by_the_signature(root: Path) -> None:
    metrics = root / "v1" / "metrics.json"
    metrics.write_text('{"ndcg@10": 0.99}')
    refused(root, "v1", "checksum")  # the manifest as signed
    remanifest(root / "v1")  # checksums rewritten, signature dropped
    refused(root, "v1", "unsigned")
    manifest = json.loads((root / "v1" / MANIFEST).read_text())
    manifest["signature"] = {"alg": "HMAC-SHA256", "hex": "0" * 64}  # a forged one
    (root / "v1" / MANIFEST).write_text(json.dumps(manifest))
    refused(root, "v1", "bad_signature")


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "grow", "delete"])
def test_tampered_file_is_refused(root: Path, damage: str) -> None:
    target = root / "v1" / "item_embeddings.npy"
    data = bytearray(target.read_bytes())
    if damage == "flip_byte":
        data[-3] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-10]))
    elif damage == "grow":
        target.write_bytes(bytes(data) + b"\0" * 64)
    else:
        target.unlink()
    refused(root, "v1", "checksum")


@pytest.mark.parametrize("version", ["../v1", "/tmp/v1", "v1/..", ".", "..", "", "a" * 129, "v 1", "v1\n"])
def test_version_that_is_not_a_plain_name_is_refused(root: Path, version: str) -> None:
    refused(root, version, "bad_version")


def test_missing_version_is_refused(root: Path) -> None:
    refused(root, "v9", "not_found")


def test_version_symlinked_out_of_the_artifacts_folder_is_refused(trained, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    save_artifact(trained, outside, version="evil", key=KEY)  # a perfectly signed version, elsewhere
    (root / "evil").symlink_to(outside / "evil", target_is_directory=True)
    refused(root, "evil", "outside_artifacts_dir")
    # The artifacts folder itself may be a link (a mounted volume); what counts is where versions resolve.
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    assert resolve_version(tmp_path / "link", "v1") == (root / "v1").resolve()
    assert load_version(tmp_path / "link", "v1", key=KEY).manifest["version"] == "v1"


def test_symlinked_file_inside_a_version_is_refused(root: Path, tmp_path: Path) -> None:
    metrics = root / "v1" / "metrics.json"
    copy = tmp_path / "metrics-copy.json"
    copy.write_bytes(metrics.read_bytes())  # same bytes, so the checksum alone would pass
    metrics.unlink()
    metrics.symlink_to(copy)
    refused(root, "v1", "unlisted_file")


def test_manifest_version_must_be_the_announced_one(root: Path) -> None:
    shutil.copytree(root / "v1", root / "v2")  # signed, intact, but it says v1
    assert refused(root, "v2", "version_mismatch")
    refused(root, "v2", "version_mismatch", key=None)


def test_manifest_naming_files_outside_the_folder_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    manifest = json.loads((root / "v1" / MANIFEST).read_text())
    manifest["files"]["../../secret"] = {"sha256": "0" * 64, "bytes": 1}
    (root / "v1" / MANIFEST).write_text(json.dumps(sign_manifest(manifest, KEY)))
    err = refused(root, "v1", "malformed")
    assert "plain relative" in str(err)


class _Marker:
    """Unpickling this object writes a file: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pickle ran"))


def test_pickle_weights_are_never_loaded_even_signed(trained, root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    folder = root / "v1"
    (folder / "weights.safetensors").unlink()
    torch.save({"state": _Marker(marker)}, folder / "weights.pt")  # torch.save writes a pickle
    config = json.loads((folder / "config.json").read_text())
    config["weights"] = "weights.pt"
    (folder / "config.json").write_text(json.dumps(config))
    remanifest(folder, KEY)  # signed by whoever holds the key: the format alone is refused
    refused(root, "v1", "not_safetensors")
    assert not marker.exists()


def test_pickle_under_the_safetensors_name_is_refused(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    (root / "v1" / "weights.safetensors").write_bytes(pickle.dumps(_Marker(marker)))
    remanifest(root / "v1", KEY)
    refused(root, "v1", "not_safetensors")
    assert not marker.exists()


def test_pickled_item_vectors_are_refused(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    vectors = np.empty(1, dtype=object)
    vectors[0] = _Marker(marker)
    np.save(root / "v1" / "item_embeddings.npy", vectors, allow_pickle=True)
    remanifest(root / "v1", KEY)
    refused(root, "v1", "malformed")
    assert not marker.exists()


def test_stray_file_in_a_version_is_refused(root: Path) -> None:
    (root / "v1" / "weights.pt").write_bytes(b"anything")  # not listed: never read, and refused
    refused(root, "v1", "unlisted_file")


def test_ids_and_vectors_that_disagree_are_refused(root: Path) -> None:
    items = json.loads((root / "v1" / "items.json").read_text())
    (root / "v1" / "items.json").write_text(json.dumps(items[:-1]))
    remanifest(root / "v1", KEY)
    refused(root, "v1", "size_mismatch")


def test_counts_that_disagree_with_the_files_are_refused(root: Path) -> None:
    manifest = json.loads((root / "v1" / MANIFEST).read_text())
    remanifest(root / "v1", KEY, counts={**manifest["counts"], "users": manifest["counts"]["users"] + 1})
    refused(root, "v1", "size_mismatch")


@pytest.mark.parametrize("edit", [{"n_layers": 10**6}, {"dim": 9}, {"n_features": 10**9}, {"tower": "unknown"}],
                         ids=["layers", "dim", "features", "tower"])
def test_tower_spec_that_disagrees_with_the_weights_is_refused_before_allocating(root: Path, edit) -> None:
    config = json.loads((root / "v1" / "config.json").read_text())
    config["tower_spec"].update(edit)
    (root / "v1" / "config.json").write_text(json.dumps(config))
    remanifest(root / "v1", KEY)
    with pytest.raises(ArtifactError):
        load_version(root, "v1", key=KEY)


def test_version_rule_is_the_announcements_rule() -> None:
    from stream.core.announcements import VERSION_PATTERN as ANNOUNCED

    assert VERSION_PATTERN == ANNOUNCED


def test_saving_refuses_a_version_that_is_not_a_plain_name(trained, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        save_artifact(trained, tmp_path, version="../escape")
