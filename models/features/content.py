"""Item content features for the item tower, from the shared featurizers of this package.

``kind``: ``tfidf`` / ``bow`` (sparse, densified here: a catalogue of a few
thousand items with a capped vocabulary fits easily) or ``word2vec`` (mean word
vectors of the item text). The fitted featurizer travels in the artifact so the
worker can featurise an unseen item's text (cold start): training fits one
(:func:`fit_featurizer`), serving loads it back (:func:`load_featurizer`) and both
densify with :func:`dense_features`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from models.data.dataset import ItemCatalog
from models.features.embeddings import TextWord2Vec
from models.features.text import BagOfWords, Tfidf

MAX_FEATURES = 4096


class Featurizer(Protocol):
    """A fitted text featurizer: ``transform`` gives float32 (n_docs, n_features), dense or CSR."""

    kind: str

    def fit(self, documents: list[str]) -> Featurizer: ...

    def transform(self, documents: list[str]) -> np.ndarray | sp.csr_matrix: ...

    def save(self, path: str | Path) -> None: ...


# The shared featurizers' own ``kind`` names, for loading one back.
FEATURIZERS: dict[str, type] = {"tfidf": Tfidf, "bow": BagOfWords, "text_word2vec": TextWord2Vec}


def fit_featurizer(catalog: ItemCatalog, kind: str, seed: int = 0) -> Featurizer | None:
    """Fit on the catalogue's documents; ``kind="none"`` gives ``None`` (id-only item tower)."""
    if kind == "none":
        return None
    if kind == "tfidf":
        feat: Featurizer = Tfidf(min_df=2, max_features=MAX_FEATURES)
    elif kind == "bow":
        feat = BagOfWords(min_df=2, max_features=MAX_FEATURES, binary=True)
    elif kind == "word2vec":
        feat = TextWord2Vec(dim=64, seed=seed)
    else:
        raise ValueError(f"unknown content kind={kind!r}; choose none, tfidf, bow or word2vec")
    return feat.fit(catalog.documents())


def dense_features(featurizer: Featurizer, documents: list[str]) -> np.ndarray:
    """float32 (len(documents), n_features), dense, whichever featurizer made it."""
    x = featurizer.transform(documents)
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_featurizer(kind: str, path: str | Path) -> Featurizer:
    """Load a featurizer saved with ``save(path)`` (JSON + npz, no pickle)."""
    try:
        cls = FEATURIZERS[kind]
    except KeyError:
        raise ValueError(f"unknown featurizer kind={kind!r}") from None
    return cls.load(path)
