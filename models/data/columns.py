"""Events as NumPy columns, and the cleaning rules of ``models.data.preprocess`` applied to them.

A topic snapshot of millions of events cannot afford one Python object per
event: :class:`EventColumns` holds them in :data:`BYTES_PER_EVENT` bytes each
(ids as codes into two id lists); :class:`CatalogColumns` holds the catalogue
as one list per field, the latest record of each item winning. Then
:func:`interactions_from_columns` cleans them into the same ``Interactions`` and
``ItemCatalog`` as ``preprocess(from_events(...))`` would (duplicates, weights,
non-positives, repeated pairs, id maps in natural order, catalogue filling),
without a DataFrame and without one dict per event or per item.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from models.data.dataset import IdMap, Interactions, ItemCatalog
from models.data.loaders import _merge_tags
from models.data.preprocess import CleaningReport, _text_or_none, natural_key
from models.errors import DataError
from models.feedback import (BASE_WEIGHTS, PLAY_SECONDS_PER_UNIT, PLAY_WEIGHT_MAX, PLAY_WEIGHT_MIN, EventType)

log = logging.getLogger(__name__)

TYPES: tuple[EventType, ...] = tuple(EventType)  # event type code -> type
TYPE_CODE: dict[str, int] = {t.value: code for code, t in enumerate(TYPES)}
_BASE = np.array([BASE_WEIGHTS[t] for t in TYPES], dtype=np.float64)
_PLAY = TYPE_CODE[EventType.PLAY.value]
# user and item codes (int32 each), type (int8), value (float64: play seconds exactly as sent, so the
# weights are the DataFrame path's to the bit), timestamp (int64)
BYTES_PER_EVENT = 4 + 4 + 1 + 8 + 8


@dataclass(frozen=True)
class EventColumns:
    """Validated events, one row each, in source order.

    ``user``, ``item``: int32 (n,) codes into ``user_ids`` / ``item_ids``;
    ``event_type``: int8 (n,) codes into :data:`TYPES`; ``value``: float64 (n,),
    NaN when the event has none; ``timestamp``: int64 (n,) milliseconds.
    """

    user: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray
    user_ids: Sequence[str]
    item_ids: Sequence[str]

    def __post_init__(self) -> None:
        n = len(self.user)
        for name, dtype in (("user", np.int32), ("item", np.int32), ("event_type", np.int8),
                            ("value", np.float64), ("timestamp", np.int64)):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or len(arr) != n or arr.dtype != dtype:
                raise DataError(f"EventColumns.{name} must be a 1-d {np.dtype(dtype).name} array of length {n}")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, c).nbytes for c in ("user", "item", "event_type", "value", "timestamp"))

    @classmethod
    def from_records(cls, events: Iterable[Mapping]) -> EventColumns:
        """Columns of already validated event mappings (``user_id``, ``item_id``, ``event_type``,
        ``timestamp_ms``, optional ``value``): for tests and small inputs."""
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        rows = [(users.setdefault(str(e["user_id"]), len(users)), items.setdefault(str(e["item_id"]), len(items)),
                 TYPE_CODE[str(getattr(e["event_type"], "value", e["event_type"]))],
                 np.nan if e.get("value") is None else float(e["value"]), int(e["timestamp_ms"])) for e in events]
        cols = list(zip(*rows)) if rows else [(), (), (), (), ()]
        return cls(np.array(cols[0], np.int32), np.array(cols[1], np.int32), np.array(cols[2], np.int8),
                   np.array(cols[3], np.float64), np.array(cols[4], np.int64), list(users), list(items))


class CatalogColumns:
    """Catalogue records as columns (``title``, ``text``, ``tags`` lists), one row per item id.

    :meth:`put` of an id already held replaces its row (a compacted topic's latest
    record wins), :meth:`remove` takes it down (a tombstone). ``category`` joins the
    tags, as the DataFrame loaders merge a category column into tags. Rows freed by
    :meth:`remove` are reused, so the lists never outgrow the largest catalogue seen.
    """

    def __init__(self) -> None:
        self.row: dict[str, int] = {}
        self.title: list[str | None] = []
        self.text: list[str | None] = []
        self.tags: list[list[str]] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.row)

    def put(self, item_id: str, title: str | None = None, text: str | None = None,
            category: str | None = None, tags: Sequence[str] = ()) -> None:
        """Hold ``item_id``'s record, replacing any earlier one."""
        # Interned: a catalogue's tags come from a small vocabulary, so each is held once, not per item.
        merged = [sys.intern(t) for t in _merge_tags(list(tags), category)]
        at = self.row.get(item_id)
        if at is None and not self._free:  # a new row at the end
            self.row[item_id] = len(self.title)
            self.title.append(title)
            self.text.append(text)
            self.tags.append(merged)
            return
        if at is None:
            at = self.row[item_id] = self._free.pop()
        self.title[at], self.text[at], self.tags[at] = title, text, merged

    def remove(self, item_id: str) -> None:
        """Take ``item_id`` down; unknown ids are ignored."""
        at = self.row.pop(item_id, None)
        if at is not None:
            self.title[at], self.text[at], self.tags[at] = None, None, []
            self._free.append(at)

    @classmethod
    def from_records(cls, items: Iterable[Mapping]) -> CatalogColumns:
        """Columns of catalogue mappings (``item_id``, optional ``title``, ``text``, ``category``,
        ``tags``), later records of an id replacing earlier ones: for tests and small inputs."""
        out = cls()
        for it in items:
            tags = it.get("tags") or ()
            out.put(str(it["item_id"]), it.get("title"), it.get("text"), it.get("category"),
                    [tags] if isinstance(tags, str) else list(tags))
        return out

    def catalog(self, items: IdMap, report: CleaningReport | None = None) -> ItemCatalog:
        """The catalogue in ``items`` order, filled as ``preprocess`` fills it: a missing title
        becomes the id, missing text the title; ``report.items_filled`` counts such items."""
        titles, texts, tags = [], [], []
        filled = 0
        for external in items.ids:
            at = self.row.get(external)
            title = None if at is None else _text_or_none(self.title[at])
            text = None if at is None else _text_or_none(self.text[at])
            if title is None or text is None:
                filled += 1
            titles.append(title if title is not None else external)
            texts.append(text if text is not None else (title or ""))
            tags.append([] if at is None else self.tags[at])  # already what _tag_list makes: shared, not copied
        if report is not None:
            report.items_filled = filled
        return ItemCatalog(items=items, title=titles, text=texts, tags=tags)


def weights(event_type: np.ndarray, value: np.ndarray) -> np.ndarray:
    """float64 (n,) implicit-feedback weights: ``models.feedback.event_weight`` over columns."""
    w = _BASE[event_type.astype(np.intp)]
    timed = (event_type == _PLAY) & np.isfinite(value)
    w[timed] = np.clip(value[timed] / PLAY_SECONDS_PER_UNIT, PLAY_WEIGHT_MIN, PLAY_WEIGHT_MAX)
    return w


def interactions_from_columns(columns: EventColumns, items: CatalogColumns | Iterable[Mapping] | None = None,
                              name: str = "events") -> tuple[Interactions, ItemCatalog, CleaningReport]:
    """Clean ``columns`` as :func:`models.data.preprocess.preprocess` cleans an event log with its
    defaults (first row of each repeated pair, with the pair's largest weight); ``items`` is the
    catalogue, as :class:`CatalogColumns` or as mappings (:meth:`CatalogColumns.from_records`).
    Raises ``DataError`` when nothing is left."""
    report = CleaningReport(n_input=len(columns))
    user, item, etype, value, ts = (columns.user, columns.item, columns.event_type, columns.value,
                                    columns.timestamp)
    keep = _first_of_duplicates(user, item, etype, value, ts)
    report.drop("duplicate", len(user) - len(keep))
    w = weights(etype[keep], value[keep])
    positive = w > 0
    report.drop("not_positive", int((~positive).sum()))
    keep, w = keep[positive], w[positive]
    keep_order = np.argsort(ts[keep], kind="stable")  # equal timestamps keep their source order
    keep, w = keep[keep_order], w[keep_order]
    pair = user[keep].astype(np.int64) * max(len(columns.item_ids), 1) + item[keep]
    uniq, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    pair_max = np.full(len(uniq), -np.inf)
    np.maximum.at(pair_max, inverse, w)
    first.sort()  # rows in time order
    report.drop("repeated_pair", len(keep) - len(first))
    rows, w = keep[first], pair_max[inverse[first]]
    if len(rows) == 0:
        raise DataError(f"no interactions left after cleaning {name!r}: {report.as_dict()}")

    users, user_index = _id_map(user[rows], columns.user_ids)
    item_map, item_index = _id_map(item[rows], columns.item_ids)
    interactions = Interactions(user=user_index, item=item_index, timestamp=ts[rows].astype(np.int64),
                                weight=w.astype(np.float32), users=users, items=item_map)
    if not isinstance(items, CatalogColumns):
        items = CatalogColumns.from_records(items or ())
    catalog = items.catalog(item_map, report)
    report.n_output, report.n_users, report.n_items = len(interactions), len(users), len(item_map)
    log.info("cleaned name=%s rows_in=%d rows_out=%d users=%d items=%d dropped=%s", name, report.n_input,
             report.n_output, report.n_users, report.n_items,
             ",".join(f"{k}:{v}" for k, v in sorted(report.dropped.items())) or "none")
    return interactions, catalog, report


def _first_of_duplicates(user: np.ndarray, item: np.ndarray, etype: np.ndarray, value: np.ndarray,
                         ts: np.ndarray) -> np.ndarray:
    """Row numbers (int64, ascending) of each distinct (user, item, type, value, timestamp)'s first row."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    val = np.where(np.isnan(value), -1.0, value)  # values are >= 0: -1 stands for none
    order = np.lexsort((np.arange(n), val, etype, ts, item, user))
    same = np.ones(n, dtype=bool)
    for col in (user, item, ts, etype, val):
        c = col[order]
        same[1:] &= c[1:] == c[:-1]
    same[0] = False
    first = order[~same]
    first.sort()
    return first.astype(np.int64)


def _id_map(codes: np.ndarray, ids: Sequence[str]) -> tuple[IdMap, np.ndarray]:
    """The IdMap of the ids ``codes`` use, in natural order, and each row's index in it (int64)."""
    used = np.unique(codes)
    names = [ids[int(c)] for c in used]
    order = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    index_of_code = np.empty(len(used), dtype=np.int64)
    index_of_code[np.asarray(order, dtype=np.int64)] = np.arange(len(used), dtype=np.int64)
    return IdMap(tuple(names[i] for i in order)), index_of_code[np.searchsorted(used, codes)]
