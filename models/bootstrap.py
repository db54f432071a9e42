"""Item vectors from content alone, before any model is trained (version ``content-v0``).

Stateless: a feature-hashed bag of words of an item's title, text and tags,
projected to ``dim`` dimensions by a fixed seeded Gaussian matrix and
L2-normalised. Any item, also one first seen a second ago, gets the same vector
on every worker without fitting anything, so the system can recommend from the
first event and add new items to the index at once.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np

BOOTSTRAP_VERSION = "content-v0"
_TOKEN = re.compile(r"[a-z0-9]+")


class HashedContentEncoder:
    """Content vectors: hashed token counts (``n_buckets``) times a fixed projection to ``dim``."""

    def __init__(self, dim: int = 64, n_buckets: int = 1 << 14, seed: int = 0) -> None:
        if dim < 1 or n_buckets < 1:
            raise ValueError(f"dim and n_buckets must be positive, got {dim}, {n_buckets}")
        self.dim = dim
        self.n_buckets = n_buckets
        rng = np.random.default_rng(seed)
        self._projection = (rng.standard_normal((n_buckets, dim)) / np.sqrt(dim)).astype(np.float32)

    @staticmethod
    def item_text(item: Mapping[str, Any]) -> str:
        """The words of an item's catalogue record that describe it."""
        tags = item.get("tags") or []
        if isinstance(tags, str):
            tags = [tags]
        parts: Iterable[Any] = (item.get("title"), item.get("text"), item.get("category"), *tags)
        return " ".join(str(p) for p in parts if p)

    def _bucket(self, token: str) -> int:
        # FNV-1a: stable across processes (Python's hash() is salted per process).
        h = 0x811C9DC5
        for byte in token.encode():
            h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
        return h % self.n_buckets

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), dim), unit rows; a text without words gets a zero row."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower())
            if not tokens:
                continue
            buckets, counts = np.unique([self._bucket(t) for t in tokens], return_counts=True)
            v = (np.log1p(counts).astype(np.float32)[:, None] * self._projection[buckets]).sum(axis=0)
            norm = np.linalg.norm(v)
            if norm > 0:
                out[row] = v / norm
        return out

    def encode_items(self, items: list[Mapping[str, Any]]) -> np.ndarray:
        """Vectors for catalogue records (``title``, ``text``, ``category``, ``tags``)."""
        return self.encode_texts([self.item_text(it) for it in items])
