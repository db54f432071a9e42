"""Save/load round trips and refusal of altered folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index import (
    ChecksumMismatch,
    IndexConfig,
    ManifestError,
    StoreError,
    VectorIndex,
    build_index,
    load_index,
    read_manifest,
    save_index,
)
from index.store import FORMAT_VERSION, INDEX_FILE, MANIFEST_FILE
from tests.unit.index.conftest import SMALL_CONFIGS, Dataset


def test_round_trip_gives_identical_results(fresh: VectorIndex, small: Dataset, tmp_path: Path) -> None:
    fresh.add(-small.items[:5], small.ids[:5])  # replaced: HNSW now has tombstones
    fresh.remove(small.ids[5:10])
    manifest = save_index(fresh, tmp_path / "v1", version="v1")
    loaded, read_back = load_index(tmp_path / "v1")
    assert read_back == manifest == read_manifest(tmp_path / "v1")
    assert type(loaded) is type(fresh) and loaded.config == fresh.config
    np.testing.assert_array_equal(loaded.ids(), fresh.ids())
    for exclude in (None, [set(small.ids[:50].tolist())] * small.queries.shape[0]):
        expected = fresh.search(small.queries, 20, exclude=exclude)
        got = loaded.search(small.queries, 20, exclude=exclude)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    # The loaded index keeps working incrementally.
    loaded.add(small.items[5:10], small.ids[5:10])
    assert len(loaded) == small.ids.size


def test_manifest_describes_the_index(fresh: VectorIndex, tmp_path: Path) -> None:
    manifest = save_index(fresh, tmp_path / "ix")
    raw = json.loads((tmp_path / "ix" / MANIFEST_FILE).read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["kind"] == fresh.kind and raw["factory"] == fresh.factory_string
    assert raw["dim"] == 64 and raw["count"] == len(fresh) and raw["metric"] == "inner_product"
    assert raw["search_params"] == fresh.search_params()
    assert raw["sha256"] == raw["files"][INDEX_FILE]["sha256"] and len(raw["sha256"]) == 64
    assert raw["built_at"] and raw["saved_at"] and raw["faiss_version"]
    assert manifest.index_version.endswith(raw["sha256"][:12])
    assert IndexConfig.from_dict(raw["config"]) == fresh.config
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left behind"


@pytest.fixture
def saved(small: Dataset, tmp_path: Path) -> Path:
    index = build_index(small.items, small.ids, SMALL_CONFIGS["hnsw"])
    index.remove(small.ids[:3])
    save_index(index, tmp_path / "ix")
    return tmp_path / "ix"


def test_flipped_byte_is_refused(saved: Path) -> None:
    path = saved / INDEX_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        load_index(saved)


def test_truncated_file_is_refused(saved: Path) -> None:
    path = saved / INDEX_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ChecksumMismatch, match="truncated"):
        load_index(saved)


def test_altered_extra_file_is_refused(saved: Path) -> None:
    np.save(saved / "tombstones.npy", np.array([0], np.int64))
    with pytest.raises(ChecksumMismatch):
        load_index(saved)


def test_missing_file_is_refused(saved: Path) -> None:
    (saved / INDEX_FILE).unlink()
    with pytest.raises(ChecksumMismatch):
        load_index(saved)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(format_version=FORMAT_VERSION + 1),
        lambda m: m.pop("dim"),
        lambda m: m.update(count=m["count"] + 1),
        lambda m: m.update(sha256="0" * 64),
        lambda m: m["config"].update(hnsw_m="many"),
        lambda m: m.update(kind="annoy"),
    ],
    ids=["format", "missing-field", "count", "sha-disagrees", "config", "kind"],
)
def test_inconsistent_manifest_is_refused(saved: Path, edit) -> None:
    path = saved / MANIFEST_FILE
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(StoreError):
        load_index(saved)


def test_unreadable_manifest_is_refused(saved: Path, tmp_path: Path) -> None:
    (saved / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError):
        load_index(saved)
    with pytest.raises(ManifestError):
        load_index(tmp_path / "nowhere")


def test_existing_folder_needs_overwrite(saved: Path, small: Dataset) -> None:
    other = build_index(small.items[:100], small.ids[:100], SMALL_CONFIGS["flat"])
    with pytest.raises(StoreError, match="exists"):
        save_index(other, saved)
    save_index(other, saved, overwrite=True)
    loaded, manifest = load_index(saved)
    assert manifest.kind == "flat" and len(loaded) == 100
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


# --- hostile folders: every check runs before faiss allocates from the file ----------------
def _rewrite_manifest(folder: Path, data: bytes | None = None, **fields) -> None:
    """Write ``data`` as the index file (when given) and a manifest that agrees with its checksum:
    what someone who can write the folder can do, so only the checks on the content catch it."""
    import hashlib

    if data is not None:
        (folder / INDEX_FILE).write_bytes(data)
    raw = json.loads((folder / MANIFEST_FILE).read_text())
    data = (folder / INDEX_FILE).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    raw["files"][INDEX_FILE] = {"bytes": len(data), "sha256": sha}
    raw.update(sha256=sha, **fields)
    (folder / MANIFEST_FILE).write_text(json.dumps(raw))


@pytest.fixture
def flat_saved(small: Dataset, tmp_path: Path) -> Path:
    save_index(build_index(small.items[:200], small.ids[:200], SMALL_CONFIGS["flat"]), tmp_path / "flat")
    return tmp_path / "flat"


def test_grown_file_is_refused_before_it_is_read(saved: Path) -> None:
    with open(saved / INDEX_FILE, "ab") as f:
        f.write(b"\0" * 4096)
    with pytest.raises(ChecksumMismatch, match="truncated or replaced"):
        load_index(saved)


def test_header_of_another_faiss_type_is_refused(flat_saved: Path) -> None:
    _rewrite_manifest(flat_saved, kind="hnsw")  # an IDMap2,Flat file announced as HNSW
    with pytest.raises(ManifestError, match="faiss type"):
        load_index(flat_saved)


@pytest.mark.parametrize("fields", [{"count": 199}, {"count": 201}, {"dim": 32}], ids=["fewer", "more", "dim"])
def test_header_that_disagrees_with_the_manifest_is_refused(flat_saved: Path, fields) -> None:
    _rewrite_manifest(flat_saved, **fields)
    with pytest.raises(ManifestError, match="header"):
        load_index(flat_saved)


def test_internally_truncated_file_is_refused(flat_saved: Path) -> None:
    data = (flat_saved / INDEX_FILE).read_bytes()
    _rewrite_manifest(flat_saved, data[: len(data) // 2])  # the checksums agree, the content is cut
    with pytest.raises(StoreError, match="cannot be read"):
        load_index(flat_saved)


def test_a_size_field_larger_than_the_file_is_refused_by_the_deserialization_limit(flat_saved: Path) -> None:
    import faiss

    data = bytearray((flat_saved / INDEX_FILE).read_bytes())
    length = (200 * 64).to_bytes(8, "little")  # the stored vectors' length field, in floats
    at = data.index(length, data.index(b"IxFI") + 17)  # past the inner flat index's d and ntotal
    data[at:at + 8] = (1 << 37).to_bytes(8, "little")  # 512 GiB: faiss would try to allocate it
    _rewrite_manifest(flat_saved, bytes(data))
    limits = faiss.get_deserialization_vector_byte_limit(), faiss.get_deserialization_loop_limit()
    with pytest.raises(StoreError, match="deserialization"):
        load_index(flat_saved)
    assert (faiss.get_deserialization_vector_byte_limit(), faiss.get_deserialization_loop_limit()) == limits


@pytest.mark.parametrize("name", ["../escape.npy", "/etc/passwd", "sub/x.npy", "x.pkl"])
def test_manifest_naming_other_files_is_refused(saved: Path, name: str) -> None:
    raw = json.loads((saved / MANIFEST_FILE).read_text())
    raw["files"][name] = {"bytes": 1, "sha256": "0" * 64}
    (saved / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="only index.faiss"):
        load_index(saved)


def test_manifest_checksum_from_an_enclosing_manifest(saved: Path) -> None:
    import hashlib

    good = hashlib.sha256((saved / MANIFEST_FILE).read_bytes()).hexdigest()
    assert len(load_index(saved, manifest_sha256=good)[0]) > 0
    with pytest.raises(ChecksumMismatch):
        load_index(saved, manifest_sha256="0" * 64)
