"""Readers that turn files, the demo generator or a topic snapshot into ``RawData``.

Nothing here cleans: ``models.data.preprocess.preprocess`` does, the same way
for every source.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from models.data.preprocess import RawData
from models.errors import DataError

log = logging.getLogger(__name__)

# Not STREAMREC_DATA_DIR: that is the worker's state folder (Settings.data_dir).
DATA_DIR_ENV = "STREAMREC_DATASETS_DIR"
NAMED = ("ml-100k", "ml-1m", "yoochoose-100k", "taobao", "demo")
# Named data set -> its folder under the data directory.
FOLDERS = {"ml-100k": "ml-100k", "ml-1m": "ml-1m", "yoochoose-100k": "yoochoose-100k",
           "taobao": "taobao-userbehavior-sample"}
YOOCHOOSE_FILES = {"train": "yoochoose-clicks-100k_train_full.txt", "test": "yoochoose-clicks-100k_test.txt"}
TAOBAO_FILE = "UserBehavior-head.csv"
# Taobao's behaviours as our event types: a page view is a click, a favourite a like, a
# basket addition a cart (intent short of buying), a purchase a purchase.
TAOBAO_BEHAVIOURS = {"pv": "click", "fav": "like", "cart": "cart", "buy": "purchase"}
# Full file first: the prefix is used only when the full ratings are absent.
ML1M_RATINGS = ("ratings.dat", "ratings.dat.gz", "ratings-users-1-2999.dat.gz")
LOG_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".csv.gz", ".jsonl.gz")
COLUMN_ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "movie_id", "iid"),
    "timestamp": ("timestamp", "timestamp_ms", "ts", "time", "event_time"),
    "type": ("type", "event_type", "event"),
    "value": ("value",),
    "rating": ("rating", "score"),
}
ITEM_ALIASES = {
    "item": ("item", "item_id", "itemid", "movie_id", "id"),
    "title": ("title", "name"),
    "text": ("text", "description", "desc"),
    "tags": ("tags", "genres", "categories", "category"),
}


def default_data_dir() -> Path:
    """``$STREAMREC_DATASETS_DIR``, else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_raw(name_or_path: str | Path, data_dir: str | Path | None = None, **demo_options: Any) -> RawData:
    """Read a named data set (one of ``NAMED``) or a folder / log file."""
    name = str(name_or_path)
    if name == "demo":
        return load_demo(**demo_options)
    if name in FOLDERS:
        path = (Path(data_dir) if data_dir is not None else default_data_dir()) / FOLDERS[name]
        reader = {"ml-100k": load_movielens_100k, "ml-1m": load_movielens_1m,
                  "yoochoose-100k": load_yoochoose, "taobao": load_taobao}[name]
        return reader(path)
    path = Path(name_or_path)
    if path.is_dir():
        if (path / "u.data").exists():
            return load_movielens_100k(path)
        if (path / "movies.dat").exists():
            return load_movielens_1m(path)
        if (path / YOOCHOOSE_FILES["train"]).exists():
            return load_yoochoose(path)
        if (path / TAOBAO_FILE).exists():
            return load_taobao(path)
        events = _first_with_stem(path, ("events", "interactions", "ratings"))
        if events is None:
            raise DataError(f"{path}: no u.data, movies.dat or events.{{csv,jsonl,parquet}}")
        return load_log(events, items_path=_first_with_stem(path, ("items", "catalog")))
    if path.is_file():
        return load_log(path)
    raise DataError(f"unknown data set {name!r}: not one of {NAMED} and no such file or folder")


def load_movielens_100k(path: str | Path) -> RawData:
    """MovieLens-100K: ``u.data`` (tab separated, seconds) and ``u.item`` (latin-1, 19 genre flags)."""
    path = Path(path)
    _require(path / "u.data")
    events = pd.read_csv(
        path / "u.data", sep="\t", header=None, names=["user", "item", "rating", "timestamp"],
        dtype={"user": str, "item": str, "rating": np.int64, "timestamp": np.int64},
    )
    items = None
    if (path / "u.item").exists():
        genres = _ml100k_genres(path)
        raw_items = pd.read_csv(
            path / "u.item", sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False
        )
        flags = raw_items.iloc[:, 5:5 + len(genres)].to_numpy() == "1"
        tags = [[g for g, on in zip(genres, row) if on and g != "unknown"] for row in flags]
        titles = raw_items[1].tolist()
        items = pd.DataFrame({
            "item": raw_items[0],
            "title": titles,
            "text": [f"{t}. {' '.join(g)}" for t, g in zip(titles, tags)],
            "tags": tags,
        })
    log.info("loaded name=ml-100k path=%s rows=%d items=%d", path, len(events), 0 if items is None else len(items))
    return RawData(events=events, items=items, name="ml-100k", timestamp_unit="s", rating_range=(1, 5))


def load_movielens_1m(path: str | Path) -> RawData:
    """MovieLens-1M: ``movies.dat`` (latin-1, ``::``) and the first ratings file found of ``ML1M_RATINGS``."""
    path = Path(path)
    ratings = next((path / f for f in ML1M_RATINGS if (path / f).exists()), None)
    if ratings is None:
        raise DataError(f"{path}: none of {ML1M_RATINGS} found")
    opener = gzip.open if ratings.suffix == ".gz" else open
    with opener(ratings, "rb") as fh:
        data = fh.read()
    # Ratings are plain digits, so a one-character separator on ':' is safe and fast.
    events = pd.read_csv(
        io.BytesIO(data), sep=":", header=None, usecols=[0, 2, 4, 6],
        dtype={0: str, 2: str, 4: np.int64, 6: np.int64},
    )
    events.columns = ["user", "item", "rating", "timestamp"]
    items = None
    if (path / "movies.dat").exists():
        rows = [line.split("::") for line in (path / "movies.dat").read_text(encoding="latin-1").splitlines() if line]
        if any(len(r) != 3 for r in rows):
            raise DataError(f"{path / 'movies.dat'}: every line needs 3 '::' fields")
        tags = [[g.lower() for g in r[2].split("|") if g] for r in rows]
        items = pd.DataFrame({
            "item": [r[0] for r in rows],
            "title": [r[1] for r in rows],
            "text": [f"{r[1]}. {' '.join(t)}" for r, t in zip(rows, tags)],
            "tags": tags,
        })
    name = "ml-1m" if ratings.name.startswith("ratings.dat") else "ml-1m (users 1-2999)"
    log.info("loaded name=%s ratings_file=%s rows=%d", name, ratings.name, len(events))
    return RawData(events=events, items=items, name=name, timestamp_unit="s", rating_range=(1, 5))


def load_yoochoose(path: str | Path, part: Literal["all", "train", "test"] = "all") -> RawData:
    """YOOCHOOSE clicks (RecSys Challenge 2015, the 100k sample): one session is one user, every row a click.

    ``part``: the benchmark's ``train`` file, its ``test`` file (the last day's
    sessions), or ``all`` of both (what the leave-last-out protocol splits). There is
    no item metadata. ``Time`` is Unix seconds with a fraction.
    """
    path = Path(path)
    parts = ("train", "test") if part == "all" else (part,)
    if part not in ("all", "train", "test"):
        raise ValueError(f"part must be 'all', 'train' or 'test', got {part!r}")
    frames = []
    for p in parts:
        _require(path / YOOCHOOSE_FILES[p])
        frame = pd.read_csv(path / YOOCHOOSE_FILES[p], sep="\t", dtype={"SessionId": str, "ItemId": str, "Time": float})
        missing = {"SessionId", "ItemId", "Time"} - set(frame.columns)
        if missing:
            raise DataError(f"{path / YOOCHOOSE_FILES[p]}: missing columns {sorted(missing)}")
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True)
    events = pd.DataFrame({"user": raw["SessionId"], "item": raw["ItemId"], "timestamp": raw["Time"], "type": "click"})
    name = "yoochoose-100k" if part == "all" else f"yoochoose-100k ({part})"
    log.info("loaded name=%s path=%s rows=%d", name, path, len(events))
    return RawData(events=events, items=None, name=name, timestamp_unit="s")


def load_taobao(path: str | Path) -> RawData:
    """Taobao UserBehavior (the sample's ``UserBehavior-head.csv``): behaviours mapped by ``TAOBAO_BEHAVIOURS``.

    The item's category id is its one tag (the only content the data has).
    """
    path = Path(path)
    _require(path / TAOBAO_FILE)
    raw = pd.read_csv(path / TAOBAO_FILE, header=None, names=["user", "item", "category", "behavior", "timestamp"],
                      dtype={"user": str, "item": str, "category": str, "behavior": str}, keep_default_na=False)
    # An unknown behaviour stays unknown, and cleaning counts it as such.
    types = raw["behavior"].str.strip().str.lower().map(TAOBAO_BEHAVIOURS).fillna(raw["behavior"])
    events = pd.DataFrame({"user": raw["user"], "item": raw["item"],
                           "timestamp": pd.to_numeric(raw["timestamp"], errors="coerce"), "type": types})
    cats = raw.drop_duplicates("item", keep="last")
    items = pd.DataFrame({"item": cats["item"], "title": "item " + cats["item"],
                          "text": "category " + cats["category"], "tags": [[f"cat{c}"] for c in cats["category"]]})
    log.info("loaded name=taobao path=%s rows=%d items=%d", path, len(events), len(items))
    return RawData(events=events, items=items, name="taobao", timestamp_unit="s")


def load_log(path: str | Path, items_path: str | Path | None = None) -> RawData:
    """A generic interaction log: CSV, JSON lines or Parquet with user, item, timestamp, type and/or value/rating.

    Column names may use the aliases in ``COLUMN_ALIASES`` (``user_id``, ``event_type``, ...).
    """
    path = Path(path)
    events = _rename(_read_table(path), COLUMN_ALIASES, path)
    items = _items_frame(_read_table(Path(items_path)), Path(items_path)) if items_path else None
    log.info("loaded name=%s rows=%d items=%s", path.name, len(events), "none" if items is None else len(items))
    return RawData(events=events, items=items, name=path.name, timestamp_unit="auto")


def from_events(events: Iterable[dict], items: Iterable[dict] | None = None, name: str = "events") -> RawData:
    """Event dicts and item dicts, as a Kafka topic snapshot gives them, as ``RawData``.

    Event keys: ``user_id``, ``item_id``, ``event_type``, ``timestamp_ms``,
    ``value`` (aliases as in ``COLUMN_ALIASES``). Item keys: ``item_id``,
    ``title``, ``text``, ``tags`` and optionally ``category``.
    """
    frame = pd.DataFrame.from_records(list(events))
    events_df = _rename(frame, COLUMN_ALIASES, name)
    items_df = None
    if items is not None:
        records = list(items)
        if records:
            items_df = _items_frame(pd.DataFrame.from_records(records), name)
    unit = "ms" if "timestamp_ms" in frame.columns else "auto"
    return RawData(events=events_df, items=items_df, name=name, timestamp_unit=unit)


def load_demo(n_users: int = 1_000, n_items: int = 500, events_per_user: int = 40, seed: int = 7) -> RawData:
    """The generated demo data set (``models.data.synthetic``) as ``RawData``."""
    from models.data.synthetic import generate_demo_dataset

    ds = generate_demo_dataset(n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    return from_events(ds.events, ds.items, name="demo")


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype={"user": str, "item": str, "user_id": str, "item_id": str})
    if name.endswith((".jsonl", ".jsonl.gz")):
        return pd.read_json(path, lines=True, dtype=False)
    if name.endswith(".json"):
        return pd.read_json(path, dtype=False)
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    raise DataError(f"{path}: unsupported log format (use one of {LOG_SUFFIXES})")


def _rename(df: pd.DataFrame, aliases: dict[str, tuple[str, ...]], source: object) -> pd.DataFrame:
    """Rename the first alias found of each canonical column; the rest are dropped."""
    lower = {str(c).lower(): c for c in df.columns}
    out = {}
    for canonical, names in aliases.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is not None:
            out[canonical] = df[found]
    if "user" not in out or "item" not in out:
        raise DataError(f"{source}: need user and item columns, got {list(df.columns)}")
    return pd.DataFrame(out)


def _items_frame(df: pd.DataFrame, source: object) -> pd.DataFrame:
    lower = {str(c).lower(): c for c in df.columns}
    out: dict[str, Any] = {}
    for canonical, names in ITEM_ALIASES.items():
        found = [lower[n] for n in names if n in lower]
        if canonical == "tags" and found:
            # Tags and a single category both describe the item: merge them.
            out["tags"] = [_merge_tags(*(row for row in vals)) for vals in zip(*(df[c] for c in found))]
        elif found:
            out[canonical] = df[found[0]]
    if "item" not in out:
        raise DataError(f"{source}: the catalogue needs an item id column, got {list(df.columns)}")
    return pd.DataFrame(out)


def _merge_tags(*values: Any) -> list[str]:
    tags: list[str] = []
    for v in values:
        if isinstance(v, str):
            parts = v.replace("|", ",").split(",")
        elif isinstance(v, (list, tuple, np.ndarray)):
            parts = [str(p) for p in v]
        else:
            continue
        for p in parts:
            p = p.strip().lower()
            if p and p not in tags:
                tags.append(p)
    return tags


def _ml100k_genres(path: Path) -> list[str]:
    genre_file = path / "u.genre"
    if not genre_file.exists():
        return [f"genre{i}" for i in range(19)]
    pairs = [line.split("|") for line in genre_file.read_text(encoding="latin-1").splitlines() if line.strip()]
    return [name.lower() for name, _ in sorted(pairs, key=lambda p: int(p[1]))]


def _first_with_stem(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in LOG_SUFFIXES:
            if (folder / f"{stem}{suffix}").exists():
                return folder / f"{stem}{suffix}"
    return None


def _require(path: Path) -> None:
    if not path.exists():
        raise DataError(f"missing data file {path}")
