"""IndexConfig: validation, size-based choice, derived parameters."""

from __future__ import annotations

import dataclasses

import pytest

from index import ConfigError, IndexConfig


def test_defaults_are_valid_and_frozen() -> None:
    config = IndexConfig()
    assert config.kind == "auto" and config.device == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.kind = "flat"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "annoy"},
        {"device": "tpu"},
        {"hnsw_m": 0},
        {"hnsw_ef_search": -1},
        {"ivf_nprobe": 1.5},
        {"ivf_nlist": 0},
        {"pq_m": True},
        {"pq_nbits": 17},
        {"hnsw_compact_ratio": 0.0},
        {"hnsw_compact_ratio": 1.5},
        {"exclude_overfetch_max": -1},
    ],
)
def test_invalid_values_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        IndexConfig(**kwargs)


def test_kind_follows_catalogue_size() -> None:
    config = IndexConfig(auto_flat_max=100, auto_hnsw_max=1_000, auto_ivfpq_min=10_000)
    assert [config.resolve_kind(n) for n in (1, 100, 101, 1_000, 1_001, 9_999, 10_000)] == [
        "flat", "flat", "hnsw", "hnsw", "ivf", "ivf", "ivfpq",
    ]  # fmt: skip
    assert IndexConfig(kind="ivf").resolve_kind(10) == "ivf"


def test_nlist_scales_with_size_and_training_data() -> None:
    config = IndexConfig()
    assert config.resolve_nlist(1_000_000) == 4096
    assert config.resolve_nlist(100_000) == 1024
    assert config.resolve_nlist(10) == 1
    for n in (500, 5_000, 50_000):
        assert config.resolve_nlist(n) * config.ivf_train_per_list <= n
    assert IndexConfig(ivf_nlist=77).resolve_nlist(10) == 77


def test_pq_m_must_divide_the_dimension() -> None:
    assert IndexConfig().resolve_pq_m(64) == 64
    assert IndexConfig(pq_m=16).resolve_pq_m(64) == 16
    with pytest.raises(ConfigError):
        IndexConfig(pq_m=24).resolve_pq_m(64)


def test_dict_round_trip_and_unknown_keys() -> None:
    config = IndexConfig(kind="hnsw", hnsw_m=16)
    assert IndexConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        IndexConfig.from_dict({"kind": "flat", "colour": "blue"})


def test_hnsw_ef_search_is_sized_to_each_search_unless_set():
    auto = IndexConfig()
    assert [auto.hnsw_ef(k) for k in (1, 10, 32, 74, 100)] == [64, 64, 64, 148, 200]
    fixed = IndexConfig(hnsw_ef_search=128)
    assert [fixed.hnsw_ef(k) for k in (10, 100, 300)] == [128, 128, 300]  # raised to k, never below it
    with pytest.raises(ConfigError):
        IndexConfig(hnsw_ef_search=0)
