"""Bag-of-words and TF-IDF item text features (scikit-learn), saved as vocabulary JSON + idf npz."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from models.errors import ModelsError

log = logging.getLogger(__name__)

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more characters
_TOKEN_RE = re.compile(TOKEN_PATTERN)
FORMAT_VERSION = 1


class FeaturizerError(ModelsError):
    """A featurizer was used before fitting, or a saved one is malformed."""


def write_meta(path: str | Path, kind: str, params: dict, **extra: object) -> None:
    """Write ``<path>.json``: format version, featurizer kind, parameters and ``extra`` fields."""
    meta = {"format": FORMAT_VERSION, "kind": kind, "params": params, **extra}
    Path(f"{path}.json").write_text(json.dumps(meta), encoding="utf-8")


def read_meta(path: str | Path, kind: str) -> dict:
    """Read ``<path>.json`` written by ``write_meta``; raises ``FeaturizerError`` on another kind or format."""
    meta = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    if meta.get("kind") != kind or meta.get("format") != FORMAT_VERSION:
        raise FeaturizerError(f"{path}.json: not a {kind} featurizer of format {FORMAT_VERSION}")
    return meta


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, the same rule as the sparse featurizers."""
    return _TOKEN_RE.findall(text.lower())


class BagOfWords:
    """Term counts over a vocabulary learnt from item documents; float32 CSR (n_docs, n_terms)."""

    kind = "bow"

    def __init__(self, min_df: int = 1, max_features: int | None = 20_000, ngram_max: int = 1, binary: bool = False):
        self.min_df, self.max_features, self.ngram_max, self.binary = min_df, max_features, ngram_max, binary
        self.vocabulary: list[str] | None = None

    def _counter(self, vocabulary: dict[str, int] | None = None) -> CountVectorizer:
        return CountVectorizer(
            lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, self.ngram_max),
            min_df=1 if vocabulary else self.min_df, max_features=None if vocabulary else self.max_features,
            binary=self.binary, vocabulary=vocabulary, dtype=np.float32,
        )

    def fit(self, documents: Sequence[str]) -> BagOfWords:
        vec = self._counter().fit(documents)
        self.vocabulary = vec.get_feature_names_out().tolist()
        log.info("fitted featurizer=%s docs=%d terms=%d", self.kind, len(documents), len(self.vocabulary))
        return self

    def fit_transform(self, documents: Sequence[str]) -> sp.csr_matrix:
        return self.fit(documents).transform(documents)

    def transform(self, documents: Sequence[str]) -> sp.csr_matrix:
        """Counts, float32 CSR (len(documents), n_terms); unknown words are ignored (cold start)."""
        if self.vocabulary is None:
            raise FeaturizerError(f"{self.kind}: fit or load first")
        vocab = {term: i for i, term in enumerate(self.vocabulary)}
        return sp.csr_matrix(self._counter(vocab).transform(documents), dtype=np.float32)

    def _params(self) -> dict:
        return {"min_df": self.min_df, "max_features": self.max_features, "ngram_max": self.ngram_max,
                "binary": self.binary}

    def save(self, path: str | Path) -> None:
        """Write ``<path>.json`` (kind, parameters, vocabulary) and, for TF-IDF, ``<path>.npz``."""
        if self.vocabulary is None:
            raise FeaturizerError(f"{self.kind}: nothing to save, fit first")
        write_meta(path, self.kind, self._params(), vocabulary=self.vocabulary)

    @classmethod
    def load(cls, path: str | Path) -> BagOfWords:
        meta = read_meta(path, cls.kind)
        obj = cls(**meta["params"])
        obj.vocabulary = [str(t) for t in meta["vocabulary"]]
        return obj


class Tfidf(BagOfWords):
    """TF-IDF (scikit-learn's smooth idf, L2-normalised rows); float32 CSR (n_docs, n_terms).

    Transform is recomputed from the saved vocabulary and idf, so a loaded
    featurizer gives the same matrix as scikit-learn's ``TfidfVectorizer``.
    """

    kind = "tfidf"

    def __init__(self, min_df: int = 1, max_features: int | None = 20_000, ngram_max: int = 1,
                 sublinear_tf: bool = False):
        super().__init__(min_df=min_df, max_features=max_features, ngram_max=ngram_max, binary=False)
        self.sublinear_tf = sublinear_tf
        self.idf: np.ndarray | None = None

    def fit(self, documents: Sequence[str]) -> Tfidf:
        vec = TfidfVectorizer(
            lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, self.ngram_max), min_df=self.min_df,
            max_features=self.max_features, sublinear_tf=self.sublinear_tf, dtype=np.float32,
        ).fit(documents)
        self.vocabulary = vec.get_feature_names_out().tolist()
        self.idf = vec.idf_.astype(np.float32)
        log.info("fitted featurizer=%s docs=%d terms=%d", self.kind, len(documents), len(self.vocabulary))
        return self

    def transform(self, documents: Sequence[str]) -> sp.csr_matrix:
        """TF-IDF, float32 CSR (len(documents), n_terms), rows of unit L2 norm (zero when no known word)."""
        if self.idf is None:
            raise FeaturizerError(f"{self.kind}: fit or load first")
        tf = super().transform(documents)
        if self.sublinear_tf:
            tf.data = np.log(tf.data) + 1.0
        return sp.csr_matrix(normalize(tf @ sp.diags(self.idf), norm="l2"), dtype=np.float32)

    def _params(self) -> dict:
        return {"min_df": self.min_df, "max_features": self.max_features, "ngram_max": self.ngram_max,
                "sublinear_tf": self.sublinear_tf}

    def save(self, path: str | Path) -> None:
        super().save(path)
        np.savez(f"{path}.npz", idf=self.idf)

    @classmethod
    def load(cls, path: str | Path) -> Tfidf:
        obj = super().load(path)
        with np.load(f"{path}.npz", allow_pickle=False) as z:
            obj.idf = z["idf"].astype(np.float32)
        if obj.vocabulary is None or len(obj.idf) != len(obj.vocabulary):
            raise FeaturizerError(f"{path}: idf and vocabulary lengths differ")
        return obj
