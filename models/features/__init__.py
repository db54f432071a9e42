"""Item features from metadata and behaviour, aligned with the items ``IdMap``.

Sparse text featurizers (``BagOfWords``, ``Tfidf``) return float32 CSR
matrices; embedding featurizers (``TextWord2Vec``, ``Item2Vec``) return dense
float32 arrays. Fitted featurizers transform unseen items' text (cold start)
and save to JSON + ``.npz`` (no pickle).
"""

from models.features.embeddings import Item2Vec, TextWord2Vec
from models.features.text import BagOfWords, Tfidf, tokenize

__all__ = ["BagOfWords", "Item2Vec", "TextWord2Vec", "Tfidf", "tokenize"]
