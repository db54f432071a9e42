"""Cleaning rules that turn a raw log (``RawData``) into ``Interactions`` and an ``ItemCatalog``.

Order of the steps, as in production pipelines: drop invalid rows (each
reason counted), drop exact duplicates (at-least-once delivery replays
records), map events or ratings to implicit-feedback weights (skips and other
non-positive events leave the positives), collapse repeated (user, item)
pairs, k-core filter, build stable id maps, align the catalogue.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from models.data.dataset import IdMap, Interactions, ItemCatalog
from models.errors import DataError
from models.feedback import EventType, event_weight

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset(t.value for t in EventType)
RAW_OPTIONS = frozenset({"data_dir", "n_users", "n_items", "events_per_user", "seed"})


@dataclass(frozen=True)
class RawData:
    """An uncleaned log and catalogue, as read from files or a topic snapshot.

    ``events`` columns: ``user``, ``item`` (object, ids as read), ``timestamp``
    (numbers or date strings), and ``type`` and/or ``value`` / ``rating``.
    ``items``: columns ``item``, ``title``, ``text``, ``tags`` (list of str),
    or None when there is no catalogue. ``timestamp_unit``: "s", "ms" or "auto"
    (numbers below 1e11 are seconds: 1e11 s is the year 5138, 1e11 ms is 1973).
    """

    events: pd.DataFrame
    items: pd.DataFrame | None
    name: str
    timestamp_unit: Literal["s", "ms", "auto"] = "auto"
    rating_range: tuple[float, float] | None = None


@dataclass
class CleaningReport:
    """What cleaning did: rows in, rows out, and the count dropped for each reason."""

    n_input: int = 0
    n_output: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    n_users: int = 0
    n_items: int = 0
    items_filled: int = 0

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_input": self.n_input,
            "n_output": self.n_output,
            "dropped": dict(self.dropped),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "items_filled": self.items_filled,
        }


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``load_dataset`` keyword options into (loader options, preprocess options)."""
    raw = {k: v for k, v in options.items() if k in RAW_OPTIONS}
    prep = {k: v for k, v in options.items() if k not in RAW_OPTIONS}
    return raw, prep


def natural_key(external_id: str) -> tuple[int, int, str]:
    """Sort key: all-digit ids numerically ("2" < "10"), then the rest as text."""
    return (0, int(external_id), "") if external_id.isdigit() else (1, 0, external_id)


def preprocess(
    raw: RawData,
    *,
    min_rating: float | None = None,
    rating_weight: bool = False,
    repeats: Literal["first", "last", "keep"] = "first",
    k_core: int = 0,
    include_unseen_items: bool = False,
    require_metadata: bool = False,
    max_users: int | None = None,
) -> tuple[Interactions, ItemCatalog, CleaningReport]:
    """Clean ``raw`` into implicit feedback and an aligned catalogue.

    Ratings: every rating is one positive with weight 1.0 (the MovieLens
    protocol), or ``rating / max rating`` when ``rating_weight``; ``min_rating``
    drops lower ones. Events: weight from ``models.feedback.event_weight``;
    skips are not positives. ``repeats``: keep the first / last row of each
    (user, item) pair, with the pair's largest weight, or keep every row.
    ``k_core``: repeatedly drop users and items with fewer rows than this.
    ``include_unseen_items``: catalogue items without interactions get ids
    too (for content-based cold start). ``require_metadata``: drop rows whose
    item is missing from the catalogue instead of filling its metadata.
    ``max_users``: keep only the first this many users in id order (a prefix,
    like the ml-1m users 1-2999 file), for quick runs.
    """
    if repeats not in ("first", "last", "keep"):
        raise ValueError(f"repeats must be 'first', 'last' or 'keep', got {repeats!r}")
    report = CleaningReport(n_input=len(raw.events))
    df = raw.events.reset_index(drop=True)
    df = _valid_rows(df, raw, report, min_rating)
    if max_users is not None:
        keep = sorted(df["user"].unique().tolist(), key=natural_key)[:max_users]
        outside = ~df["user"].isin(set(keep))
        report.drop("max_users", outside.sum())
        df = df[~outside]

    key_cols = [c for c in ("user", "item", "timestamp", "type", "value", "rating") if c in df.columns]
    dup = df.duplicated(subset=key_cols, keep="first")
    report.drop("duplicate", dup.sum())
    df = df[~dup]

    df = df.assign(weight=_weights(df, raw, rating_weight))
    not_positive = df["weight"] <= 0
    report.drop("not_positive", not_positive.sum())
    df = df[~not_positive]

    # Stable sort: equal timestamps keep their order in the source.
    df = df.sort_values("timestamp", kind="stable")
    if repeats != "keep":
        pair_max = df.groupby(["user", "item"], sort=False)["weight"].transform("max")
        df = df.assign(weight=pair_max)
        rep = df.duplicated(subset=["user", "item"], keep=repeats)
        report.drop("repeated_pair", rep.sum())
        df = df[~rep]

    catalog_df = _catalog_frame(raw)
    if require_metadata:
        unknown = ~df["item"].isin(set(catalog_df["item"])) if catalog_df is not None else df["item"].notna()
        report.drop("unknown_item", unknown.sum())
        df = df[~unknown]
    if k_core > 1:
        df = _k_core(df, k_core, report)
    if df.empty:
        raise DataError(f"no interactions left after cleaning {raw.name!r}: {report.as_dict()}")

    users = IdMap(tuple(sorted(df["user"].unique().tolist(), key=natural_key)))
    item_ids = set(df["item"].unique().tolist())
    if include_unseen_items and catalog_df is not None:
        item_ids |= set(catalog_df["item"].tolist())
    items = IdMap(tuple(sorted(item_ids, key=natural_key)))
    interactions = Interactions(
        user=pd.Categorical(df["user"], categories=users.ids).codes.astype(np.int64),
        item=pd.Categorical(df["item"], categories=items.ids).codes.astype(np.int64),
        timestamp=df["timestamp"].to_numpy(dtype=np.int64),
        weight=df["weight"].to_numpy(dtype=np.float32),
        users=users,
        items=items,
    )
    catalog = _align_catalog(items, catalog_df, report)
    report.n_output, report.n_users, report.n_items = len(interactions), len(users), len(items)
    log.info(
        "cleaned name=%s rows_in=%d rows_out=%d users=%d items=%d dropped=%s items_filled=%d",
        raw.name, report.n_input, report.n_output, report.n_users, report.n_items,
        ",".join(f"{k}:{v}" for k, v in sorted(report.dropped.items())) or "none", report.items_filled,
    )
    return interactions, catalog, report


def _valid_rows(df: pd.DataFrame, raw: RawData, report: CleaningReport, min_rating: float | None) -> pd.DataFrame:
    """Drop rows that cannot be used, counting each reason; normalise ids, timestamps, types."""
    for col in ("user", "item", "timestamp"):
        if col not in df.columns:
            raise DataError(f"{raw.name}: events need a {col!r} column, got {list(df.columns)}")
    if "type" not in df.columns and "rating" not in df.columns:
        raise DataError(f"{raw.name}: events need a 'type' or a 'rating' column")
    df = df.assign(user=_clean_ids(df["user"]), item=_clean_ids(df["item"]))
    for col, reason in (("user", "missing_user"), ("item", "missing_item")):
        bad = df[col].isna()
        report.drop(reason, bad.sum())
        df = df[~bad]

    ts = _timestamps_ms(df["timestamp"], raw.timestamp_unit)
    bad = ts.isna() | (ts < 0)
    report.drop("bad_timestamp", bad.sum())
    df = df.assign(timestamp=ts)[~bad]
    df = df.assign(timestamp=df["timestamp"].astype(np.int64))

    if "value" in df.columns:
        value = pd.to_numeric(df["value"], errors="coerce")
        bad = value.isna() & df["value"].notna()
        report.drop("bad_value", bad.sum())
        df = df.assign(value=value)[~bad]
    if "type" in df.columns:
        etype = df["type"].astype("string").str.strip().str.lower()
        has_rating = df["rating"].notna() if "rating" in df.columns else False
        bad = ~etype.isin(EVENT_TYPES) & ~(etype.isna() & has_rating)
        report.drop("unknown_event_type", bad.sum())
        df = df.assign(type=etype)[~bad]
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        uses_rating = df["type"].isna() if "type" in df.columns else pd.Series(True, index=df.index)
        bad = uses_rating & ~np.isfinite(rating.fillna(np.nan).astype(float))
        if raw.rating_range is not None:
            lo, hi = raw.rating_range
            bad |= uses_rating & ((rating < lo) | (rating > hi))
        report.drop("bad_rating", bad.sum())
        df = df.assign(rating=rating)[~bad]
        if min_rating is not None:
            low = (df["type"].isna() if "type" in df.columns else True) & (df["rating"] < min_rating)
            report.drop("below_min_rating", low.sum())
            df = df[~low]
    return df


def _clean_ids(col: pd.Series) -> pd.Series:
    """Ids as stripped strings; NaN / empty become missing. Integral floats lose their ".0"."""
    def one(x: Any) -> str | None:
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return None
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        s = str(x).strip()
        return s or None

    # Ids repeat a lot: clean each distinct value once.
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    cleaned = np.array([one(u) for u in uniques] + [None], dtype=object)
    return pd.Series(cleaned[codes], index=col.index, dtype=object)


def _timestamps_ms(col: pd.Series, unit: str) -> pd.Series:
    """Timestamps as float milliseconds (NaN when unparsable); numbers or ISO-8601 strings."""
    numeric = pd.to_numeric(col, errors="coerce")
    is_text = numeric.isna() & col.notna()
    if is_text.any():
        parsed = pd.to_datetime(col[is_text].astype(str), errors="coerce", utc=True, format="ISO8601")
        text_ms = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        numeric = numeric.astype(float)
        numeric[is_text] = text_ms.astype(float)
        text_rows = is_text
    else:
        numeric = numeric.astype(float)
        text_rows = pd.Series(False, index=col.index)
    num_rows = ~text_rows & numeric.notna()
    if unit == "s" or (unit == "auto" and num_rows.any() and numeric[num_rows].abs().max() < 1e11):
        numeric[num_rows] = numeric[num_rows] * 1000.0
    return numeric.round()


def _weights(df: pd.DataFrame, raw: RawData, rating_weight: bool) -> np.ndarray:
    """Implicit-feedback weight per row (float64; <= 0 for non-positives)."""
    n = len(df)
    weight = np.ones(n, dtype=np.float64)
    if "type" in df.columns:
        types = df["type"].to_numpy(dtype=object)
        values = df["value"].to_numpy(dtype=float) if "value" in df.columns else np.full(n, np.nan)
        has_type = pd.notna(types)
        weight[has_type] = [
            event_weight(t, None if math.isnan(v) else v) for t, v in zip(types[has_type], values[has_type])
        ]
    else:
        has_type = np.zeros(n, dtype=bool)
    if rating_weight and "rating" in df.columns:
        hi = raw.rating_range[1] if raw.rating_range else float(df["rating"].max())
        rating = df["rating"].to_numpy(dtype=float)
        weight[~has_type] = rating[~has_type] / hi
    return weight


def _k_core(df: pd.DataFrame, k: int, report: CleaningReport) -> pd.DataFrame:
    """Repeatedly drop users and items with fewer than ``k`` rows until none is left."""
    while True:
        user_n = df["user"].map(df["user"].value_counts())
        item_n = df["item"].map(df["item"].value_counts())
        low = (user_n < k) | (item_n < k)
        if not low.any():
            return df
        report.drop("k_core", low.sum())
        df = df[~low]


def _catalog_frame(raw: RawData) -> pd.DataFrame | None:
    if raw.items is None:
        return None
    items = raw.items.assign(item=_clean_ids(raw.items["item"]))
    items = items[items["item"].notna()]
    return items.drop_duplicates(subset="item", keep="last")


def _align_catalog(items: IdMap, catalog_df: pd.DataFrame | None, report: CleaningReport) -> ItemCatalog:
    """Catalogue rows in ``items`` order; missing titles become the id, missing text the title."""
    rows: dict[str, dict] = {}
    if catalog_df is not None:
        rows = {r["item"]: r for r in catalog_df.to_dict("records")}
    titles, texts, tags = [], [], []
    filled = 0
    for external in items.ids:
        row = rows.get(external, {})
        title = _text_or_none(row.get("title"))
        text = _text_or_none(row.get("text"))
        if title is None or text is None:
            filled += 1
        titles.append(title if title is not None else external)
        texts.append(text if text is not None else (title or ""))
        tags.append(_tag_list(row.get("tags")))
    report.items_filled = filled
    return ItemCatalog(items=items, title=titles, text=texts, tags=tags)


def _text_or_none(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    s = str(x).strip()
    return s or None


def _tag_list(x: Any) -> list[str]:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return []
    if isinstance(x, str):
        parts: Iterable[Any] = x.replace("|", ",").split(",")
    else:
        parts = list(x)
    return [str(p).strip().lower() for p in parts if str(p).strip()]
