"""The catalogue record: one item on the compacted ``items`` topic, keyed by item id.

::

    {"item_id": "i7", "title": "Night Drive", "text": "A synth album ...",
     "category": "music", "tags": ["synth", "night"], "price": 9.99}

Only ``item_id`` is required. ``title``, ``text`` and ``category`` are strings,
``tags`` an array of strings: they are the words an item's content vector is
built from. Any other field (price, duration, a URL) is kept as the
producer wrote it, within the record's size limit. A record with a null value
(a tombstone) takes the item down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.core.codec import ID_SCHEMA, check_id, decode_object
from stream.core.state import dumps
from stream.errors import InvalidRecord

MAX_ITEM_BYTES = 64 * 1024
MAX_TITLE_CHARS = 512
MAX_TEXT_CHARS = 16 * 1024
MAX_CATEGORY_CHARS = 128
MAX_TAGS = 64
MAX_TAG_CHARS = 64
TEXT_FIELDS = {"title": MAX_TITLE_CHARS, "text": MAX_TEXT_CHARS, "category": MAX_CATEGORY_CHARS}


class InvalidItem(InvalidRecord):
    """A record of the items topic could not be decoded or validated."""


@dataclass(frozen=True)
class Item:
    """A validated catalogue record. Construct with :func:`parse_item`."""

    item_id: str
    title: str | None = None
    text: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # the producer's other fields, as written

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able fields (what :func:`parse_item` reads back to an equal item)."""
        out: dict[str, Any] = {**self.extra, "item_id": self.item_id}
        for name in TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tags:
            out["tags"] = list(self.tags)
        return out

    def encode(self) -> bytes:
        return dumps(self.to_dict())


def parse_item(raw: bytes | bytearray | str | Mapping[str, Any]) -> Item:
    """Decode and validate one catalogue record; raises :class:`InvalidItem` with a ``reason``."""
    data = raw if isinstance(raw, Mapping) else decode_object(raw, MAX_ITEM_BYTES, InvalidItem)
    if data.get("item_id") is None:
        raise InvalidItem("missing_field", "missing item_id")
    item_id = check_id("item_id", data["item_id"], InvalidItem)
    texts: dict[str, str | None] = {}
    for name, limit in TEXT_FIELDS.items():
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidItem("wrong_type", f"{name} must be a string, got {type(value).__name__}")
        if value is not None and len(value) > limit:
            raise InvalidItem("too_large", f"{name} is longer than {limit} characters")
        texts[name] = value
    tags = data.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidItem("wrong_type", "tags must be an array of strings")
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in tags):
        raise InvalidItem("too_large", f"at most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} characters")
    extra = {k: v for k, v in data.items() if k not in TEXT_FIELDS and k not in ("item_id", "tags")}
    return Item(item_id, texts["title"], texts["text"], texts["category"], tuple(tags), extra)


JSON_SCHEMA: dict[str, Any] = {
    "title": "streamrec catalogue item",
    "description": "One item of the catalogue; the value on the compacted items topic, keyed by item_id "
                   "(UTF-8). A null value (tombstone) takes the item down. Fields other than those listed "
                   "are kept as written.",
    "type": "object",
    "required": ["item_id"],
    "additionalProperties": True,
    "properties": {
        "item_id": ID_SCHEMA,
        "title": {"type": ["string", "null"], "maxLength": MAX_TITLE_CHARS},
        "text": {"type": ["string", "null"], "maxLength": MAX_TEXT_CHARS},
        "category": {"type": ["string", "null"], "maxLength": MAX_CATEGORY_CHARS},
        "tags": {"type": ["array", "null"], "maxItems": MAX_TAGS,
                 "items": {"type": "string", "maxLength": MAX_TAG_CHARS}},
    },
    "x-max-bytes": MAX_ITEM_BYTES,
}
