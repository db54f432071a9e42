"""Item content features for the item tower.

Private adapter: a TF-IDF / bag-of-words matrix over the catalogue's documents,
saved as a JSON vocabulary so an artifact can featurise unseen item text.
(``models.features`` is the shared home of text features; this stays minimal
until the trainer switches to it.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.data.dataset import ItemCatalog

_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TextFeaturizer:
    """Text -> float32 L2-normalised TF-IDF (``idf`` all ones: bag of words) over a fixed vocabulary."""

    kind: str
    vocabulary: dict[str, int]
    idf: np.ndarray  # float32 (n_features,)

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def transform(self, documents: list[str]) -> np.ndarray:
        """float32 (len(documents), n_features); unknown words are ignored."""
        out = np.zeros((len(documents), self.n_features), dtype=np.float32)
        for r, doc in enumerate(documents):
            for word, count in Counter(_TOKEN.findall(doc.lower())).items():
                j = self.vocabulary.get(word)
                if j is not None:
                    out[r, j] = (1.0 + math.log(count)) * self.idf[j]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def to_json(self) -> dict[str, Any]:
        words = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {"kind": self.kind, "words": words, "idf": [float(x) for x in self.idf]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextFeaturizer:
        words = list(data["words"])
        return cls(str(data["kind"]), {w: i for i, w in enumerate(words)}, np.asarray(data["idf"], dtype=np.float32))


def fit_featurizer(catalog: ItemCatalog, kind: str, max_features: int = 4096, min_df: int = 2) -> TextFeaturizer | None:
    """Fit on the catalogue's documents; ``kind`` ``none`` gives ``None``.

    ``word2vec`` falls back to TF-IDF here (the private adapter has no embeddings).
    """
    if kind == "none":
        return None
    docs = [d.lower() for d in catalog.documents()]
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(_TOKEN.findall(d)))
    words = sorted((w for w, c in df.items() if c >= min_df), key=lambda w: (-df[w], w))[:max_features]
    words.sort()
    n = max(len(docs), 1)
    if kind == "bow":
        idf = np.ones(len(words), dtype=np.float32)
    else:
        idf = np.asarray([math.log((1 + n) / (1 + df[w])) + 1.0 for w in words], dtype=np.float32)
    return TextFeaturizer("bow" if kind == "bow" else "tfidf", {w: i for i, w in enumerate(words)}, idf)
