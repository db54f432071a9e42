"""The data contract: id maps, cleaned interactions, item catalogue, splits.

Everything downstream (features, baselines, towers, trainer, evaluation) codes
against these frozen types. Loaders (``models.data.loaders``) and the cleaning
rules (``models.data.preprocess``) produce them; ``leave_last_out`` and
``time_split`` cut them into train / validation / test.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp

from models.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdMap:
    """External id (str) <-> dense index (int, ``0..len-1``), in ``ids`` order."""

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            raise DataError("IdMap ids must be unique")

    @cached_property
    def _lookup(self) -> dict[str, int]:
        return {external: i for i, external in enumerate(self.ids)}

    def index(self, external_id: str) -> int:
        """Dense index of ``external_id``; raises ``KeyError`` when unknown."""
        return self._lookup[external_id]

    def get(self, external_id: str, default: int = -1) -> int:
        """Dense index of ``external_id``, or ``default`` when unknown."""
        return self._lookup.get(external_id, default)

    def indices(self, external_ids: Iterable[str]) -> np.ndarray:
        """Dense indices, int64 shape (n,); raises ``KeyError`` on an unknown id."""
        lookup = self._lookup
        return np.fromiter((lookup[e] for e in external_ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._lookup

    def to_json(self) -> list[str]:
        return list(self.ids)

    @classmethod
    def from_json(cls, data: list[str]) -> IdMap:
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise DataError("IdMap JSON must be a list of strings")
        return cls(tuple(data))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Interactions:
    """Cleaned implicit feedback, sorted by (timestamp, source order).

    ``user``, ``item``: int64 (n,) dense indices into ``users`` / ``items``;
    ``timestamp``: int64 (n,) milliseconds since the epoch;
    ``weight``: float32 (n,) implicit-feedback weight (> 0 for positives).
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    weight: np.ndarray
    users: IdMap
    items: IdMap

    def __post_init__(self) -> None:
        n = len(self.user)
        for name, dtype in (("user", np.int64), ("item", np.int64), ("timestamp", np.int64), ("weight", np.float32)):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or len(arr) != n:
                raise DataError(f"Interactions.{name} must be a 1-d array of length {n}")
            if arr.dtype != dtype:
                raise DataError(f"Interactions.{name} must be {np.dtype(dtype).name}, got {arr.dtype}")
        if n and (self.user.min() < 0 or self.user.max() >= len(self.users)):
            raise DataError("Interactions.user out of range of users IdMap")
        if n and (self.item.min() < 0 or self.item.max() >= len(self.items)):
            raise DataError("Interactions.item out of range of items IdMap")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def sequences(self) -> list[np.ndarray]:
        """Per user index: that user's item indices (int64) in chronological order."""
        order = np.argsort(self.user, kind="stable")  # rows are already time-ordered
        counts = np.bincount(self.user, minlength=self.n_users)
        return np.split(self.item[order], np.cumsum(counts)[:-1])

    def matrix(self, binary: bool = False) -> sp.csr_matrix:
        """(n_users, n_items) float32 CSR of summed weights (1.0 per cell when ``binary``)."""
        m = sp.csr_matrix(
            (self.weight.astype(np.float32), (self.user, self.item)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def subset(self, mask: np.ndarray) -> Interactions:
        """The rows where boolean ``mask`` (n,) is true, same id maps, same order."""
        return Interactions(
            self.user[mask], self.item[mask], self.timestamp[mask], self.weight[mask], self.users, self.items
        )

    def concat(self, other: Interactions) -> Interactions:
        """Rows of both (same id maps), re-sorted stably by timestamp; ``self`` first on ties."""
        if other.users != self.users or other.items != self.items:
            raise DataError("cannot concatenate Interactions with different id maps")
        ts = np.concatenate([self.timestamp, other.timestamp])
        order = np.argsort(ts, kind="stable")
        return Interactions(
            np.concatenate([self.user, other.user])[order],
            np.concatenate([self.item, other.item])[order],
            ts[order],
            np.concatenate([self.weight, other.weight])[order],
            self.users,
            self.items,
        )


@dataclass(frozen=True)
class ItemCatalog:
    """Item metadata aligned with the ``items`` IdMap order.

    ``title``: display title; ``text``: free text used by text features
    (description, or title and genres when there is none); ``tags``: genres,
    categories or tags, lower case.
    """

    items: IdMap
    title: list[str]
    text: list[str]
    tags: list[list[str]]

    def __post_init__(self) -> None:
        n = len(self.items)
        if not (len(self.title) == len(self.text) == len(self.tags) == n):
            raise DataError(f"ItemCatalog fields must all have {n} entries")

    def __len__(self) -> int:
        return len(self.items)

    def documents(self) -> list[str]:
        """One string per item: title, text and tags, for text featurizers."""
        return [
            " ".join(part for part in (title, text, " ".join(tags)) if part)
            for title, text, tags in zip(self.title, self.text, self.tags)
        ]


@dataclass(frozen=True)
class Split:
    """Train / validation / test cut of one data set; valid and test hold at most one row per user."""

    train: Interactions
    valid: Interactions
    test: Interactions
    catalog: ItemCatalog
    name: str
    protocol: dict[str, Any] = field(default_factory=dict)


def load_dataset(name_or_path: str | Path, **options: Any) -> tuple[Interactions, ItemCatalog]:
    """Load and clean a named data set ("ml-100k", "ml-1m", "demo") or a folder/file.

    Options go to ``models.data.loaders.load_raw`` (``data_dir``, demo sizes)
    and ``models.data.preprocess.preprocess`` (``min_rating``, ``rating_weight``,
    ``repeats``, ``k_core``, ...). Use those two directly to get the cleaning report.
    """
    # Imported here because loaders and preprocess build on the types above.
    from models.data.loaders import load_raw
    from models.data.preprocess import preprocess, split_options

    raw_opts, prep_opts = split_options(options)
    interactions, catalog, _report = preprocess(load_raw(name_or_path, **raw_opts), **prep_opts)
    return interactions, catalog


def leave_last_out(interactions: Interactions, catalog: ItemCatalog, name: str = "") -> Split:
    """Temporal leave-last-out: each user's last interaction is test, the one before validation.

    Rows are already in (timestamp, source order), so equal timestamps keep
    their order in the source (a stable sort, as RecBole does). Users with
    fewer than 3 interactions stay wholly in train and are left out of
    valid and test.
    """
    n = len(interactions)
    user = interactions.user
    order = np.argsort(user, kind="stable")
    counts = np.bincount(user, minlength=interactions.n_users)
    ends = np.cumsum(counts)  # one past each user's last row in ``order``
    eligible = np.flatnonzero(counts >= 3)
    test_rows = order[ends[eligible] - 1]
    valid_rows = order[ends[eligible] - 2]
    is_test = np.zeros(n, dtype=bool)
    is_valid = np.zeros(n, dtype=bool)
    is_test[test_rows] = True
    is_valid[valid_rows] = True
    split = Split(
        train=interactions.subset(~(is_test | is_valid)),
        valid=interactions.subset(is_valid),
        test=interactions.subset(is_test),
        catalog=catalog,
        name=name,
        protocol={
            "split": "leave_last_out",
            "order": "timestamp, ties in source order (stable sort)",
            "min_user_interactions_for_eval": 3,
            "n_users": interactions.n_users,
            "n_items": interactions.n_items,
            "n_interactions": n,
            "n_eval_users": int(len(eligible)),
        },
    )
    log.info(
        "split=leave_last_out name=%s train=%d valid=%d test=%d users_short=%d",
        name, len(split.train), len(split.valid), len(split.test), int((counts < 3).sum()),
    )
    return split


def time_split(
    interactions: Interactions,
    catalog: ItemCatalog,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    name: str = "",
) -> Split:
    """Global temporal split: two time cut-offs at the given fractions of rows.

    Train holds every row before the validation cut-off. Validation holds each
    user's first row in [valid cut-off, test cut-off), test each user's first
    row from the test cut-off on, both only for users with training rows (so at
    most one row per user, like ``leave_last_out``). Later rows are unused.
    """
    if not (0 < valid_frac and 0 < test_frac and valid_frac + test_frac < 1):
        raise ValueError(f"need 0 < valid_frac, test_frac and a sum < 1; got {valid_frac}, {test_frac}")
    n = len(interactions)
    if n == 0:
        raise DataError("cannot split empty interactions")
    ts = interactions.timestamp
    t_valid = ts[min(n - 1, int(n * (1 - valid_frac - test_frac)))]
    t_test = ts[min(n - 1, int(n * (1 - test_frac)))]
    in_train = ts < t_valid
    has_train = np.zeros(interactions.n_users, dtype=bool)
    has_train[interactions.user[in_train]] = True

    def first_per_user(mask: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(mask & has_train[interactions.user])
        _, first = np.unique(interactions.user[rows], return_index=True)
        out = np.zeros(n, dtype=bool)
        out[rows[first]] = True
        return out

    split = Split(
        train=interactions.subset(in_train),
        valid=interactions.subset(first_per_user((ts >= t_valid) & (ts < t_test))),
        test=interactions.subset(first_per_user(ts >= t_test)),
        catalog=catalog,
        name=name,
        protocol={
            "split": "time_split",
            "valid_cutoff_ms": int(t_valid),
            "test_cutoff_ms": int(t_test),
            "eval_rows": "each user's first row after the cut-off, users with training rows only",
            "n_users": interactions.n_users,
            "n_items": interactions.n_items,
            "n_interactions": n,
        },
    )
    log.info("split=time_split name=%s train=%d valid=%d test=%d", name, len(split.train), len(split.valid), len(split.test))
    return split
