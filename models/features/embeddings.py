"""Dense item embeddings with gensim: Word2Vec on item text, item2vec on user sequences.

Both train with one worker and a fixed seed, and hash words with CRC32 rather
than Python's ``hash``: gensim seeds each word's initial vector from
``hashfxn(word)``, and the built-in string hash changes per process
(PYTHONHASHSEED), so the default would differ from run to run.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from gensim.models import Word2Vec

from models.data.dataset import IdMap
from models.features.text import FeaturizerError, read_meta, tokenize, write_meta

log = logging.getLogger(__name__)


def stable_hash(text: str) -> int:
    """Process-independent string hash for gensim's per-word seeding."""
    return zlib.crc32(text.encode("utf-8"))


def _params(obj: TextWord2Vec | Item2Vec) -> dict:
    return {"dim": obj.dim, "window": obj.window, "epochs": obj.epochs, "min_count": obj.min_count, "seed": obj.seed}


def _train(sentences: list[list[str]], dim: int, window: int, epochs: int, seed: int, min_count: int) -> Word2Vec:
    return Word2Vec(
        sentences=sentences, vector_size=dim, window=window, min_count=min_count, sg=1, negative=5,
        epochs=epochs, seed=seed, workers=1, hashfxn=stable_hash,
    )


class TextWord2Vec:
    """Item vector = mean of the Word2Vec vectors of its text's words; float32 (n_docs, dim).

    Documents without a known word get a zero row; unseen items' text works
    the same way (cold start).
    """

    kind = "text_word2vec"

    def __init__(self, dim: int = 64, window: int = 5, epochs: int = 20, min_count: int = 1, seed: int = 0):
        self.dim, self.window, self.epochs, self.min_count, self.seed = dim, window, epochs, min_count, seed
        self.words: list[str] | None = None
        self.vectors: np.ndarray | None = None

    def fit(self, documents: Sequence[str]) -> TextWord2Vec:
        sentences = [tokenize(d) for d in documents]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise FeaturizerError("no words in the documents")
        model = _train(sentences, self.dim, self.window, self.epochs, self.seed, self.min_count)
        self.words = list(model.wv.index_to_key)
        self.vectors = np.asarray(model.wv.vectors, dtype=np.float32)
        log.info("fitted featurizer=%s docs=%d words=%d dim=%d", self.kind, len(documents), len(self.words), self.dim)
        return self

    def fit_transform(self, documents: Sequence[str]) -> np.ndarray:
        return self.fit(documents).transform(documents)

    def transform(self, documents: Sequence[str]) -> np.ndarray:
        """Mean word vectors, float32 (len(documents), dim); unknown words are ignored."""
        if self.words is None or self.vectors is None:
            raise FeaturizerError(f"{self.kind}: fit or load first")
        lookup = {w: i for i, w in enumerate(self.words)}
        out = np.zeros((len(documents), self.vectors.shape[1]), dtype=np.float32)
        for row, doc in enumerate(documents):
            ix = [lookup[t] for t in tokenize(doc) if t in lookup]
            if ix:
                out[row] = self.vectors[ix].mean(axis=0)
        return out

    def save(self, path: str | Path) -> None:
        """Write ``<path>.json`` (kind, parameters, words) and ``<path>.npz`` (vectors)."""
        if self.words is None:
            raise FeaturizerError(f"{self.kind}: nothing to save, fit first")
        write_meta(path, self.kind, _params(self), words=self.words)
        np.savez(f"{path}.npz", vectors=self.vectors)

    @classmethod
    def load(cls, path: str | Path) -> TextWord2Vec:
        meta = read_meta(path, cls.kind)
        obj = cls(**meta["params"])
        obj.words = [str(w) for w in meta["words"]]
        with np.load(f"{path}.npz", allow_pickle=False) as z:
            obj.vectors = z["vectors"].astype(np.float32)
        if len(obj.words) != len(obj.vectors):
            raise FeaturizerError(f"{path}: words and vectors lengths differ")
        return obj


class Item2Vec:
    """item2vec: skip-gram Word2Vec over users' chronological item sequences.

    ``fit(sequences, n_items)`` takes ``Interactions.sequences()``; ``vectors``
    is float32 (n_items, dim), zero for items in no sequence (no behaviour to
    learn from: use a text featurizer for those).
    """

    kind = "item2vec"

    def __init__(self, dim: int = 64, window: int = 10, epochs: int = 10, min_count: int = 1, seed: int = 0):
        self.dim, self.window, self.epochs, self.min_count, self.seed = dim, window, epochs, min_count, seed
        self.vectors: np.ndarray | None = None

    def fit(self, sequences: Sequence[np.ndarray], n_items: int) -> Item2Vec:
        sentences = [[str(int(i)) for i in seq] for seq in sequences if len(seq)]
        if not sentences:
            raise FeaturizerError("no non-empty sequences")
        model = _train(sentences, self.dim, self.window, self.epochs, self.seed, self.min_count)
        out = np.zeros((n_items, self.dim), dtype=np.float32)
        keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
        if keys.size and keys.max() >= n_items:
            raise FeaturizerError(f"item index {keys.max()} out of range for n_items={n_items}")
        out[keys] = model.wv.vectors
        self.vectors = out
        log.info("fitted featurizer=%s sequences=%d items_seen=%d dim=%d", self.kind, len(sentences), len(keys), self.dim)
        return self

    def save(self, path: str | Path, items: IdMap | None = None) -> None:
        """Write ``<path>.json`` (kind, parameters, optional item ids) and ``<path>.npz`` (vectors)."""
        if self.vectors is None:
            raise FeaturizerError(f"{self.kind}: nothing to save, fit first")
        write_meta(path, self.kind, _params(self), items=items.to_json() if items is not None else None)
        np.savez(f"{path}.npz", vectors=self.vectors)

    @classmethod
    def load(cls, path: str | Path) -> Item2Vec:
        obj = cls(**read_meta(path, cls.kind)["params"])
        with np.load(f"{path}.npz", allow_pickle=False) as z:
            obj.vectors = z["vectors"].astype(np.float32)
        return obj
