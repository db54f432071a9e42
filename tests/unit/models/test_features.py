"""Item features: shapes, dtypes, determinism, cold-start transform, save/load without pickle."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from models.features import BagOfWords, Item2Vec, TextWord2Vec, Tfidf
from models.features.text import FeaturizerError

DOCS = [
    "Toy Story (1995). animation children's comedy",
    "GoldenEye (1995). action adventure thriller",
    "Heat (1995). action crime thriller",
    "Babe (1995). children's comedy drama",
]


def test_bow_and_tfidf_shapes_match_sklearn_and_cold_start(tmp_path) -> None:
    bow = BagOfWords().fit(DOCS)
    counts = bow.transform(DOCS)
    assert counts.shape == (4, len(bow.vocabulary)) and counts.dtype == np.float32
    tfidf = Tfidf().fit(DOCS)
    mine = tfidf.transform(DOCS).toarray()
    ref = TfidfVectorizer().fit_transform(DOCS).toarray()
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)
    # An unseen item: known words count, unknown ones are ignored.
    cold = tfidf.transform(["a brand new thriller", "zzz qqq"]).toarray()
    assert cold[0, tfidf.vocabulary.index("thriller")] == pytest.approx(1.0)
    assert not cold[1].any()
    tfidf.save(tmp_path / "tfidf")
    loaded = Tfidf.load(tmp_path / "tfidf")
    np.testing.assert_allclose(loaded.transform(DOCS).toarray(), mine)
    bow.save(tmp_path / "bow")
    assert (BagOfWords.load(tmp_path / "bow").transform(DOCS) != counts).nnz == 0
    with pytest.raises(FeaturizerError):
        Tfidf.load(tmp_path / "bow")
    with pytest.raises(FeaturizerError):
        Tfidf().transform(DOCS)


def test_word2vec_text_is_deterministic_and_handles_cold_start(tmp_path) -> None:
    a = TextWord2Vec(dim=8, epochs=5, seed=3).fit_transform(DOCS)
    b = TextWord2Vec(dim=8, epochs=5, seed=3).fit_transform(DOCS)
    assert a.shape == (4, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    model = TextWord2Vec(dim=8, epochs=5, seed=3).fit(DOCS)
    cold = model.transform(["crime thriller remake", "nothing known"])
    assert cold[0].any() and not cold[1].any()
    model.save(tmp_path / "w2v")
    np.testing.assert_array_equal(TextWord2Vec.load(tmp_path / "w2v").transform(DOCS), a)


def test_word2vec_does_not_depend_on_the_process_hash_seed() -> None:
    code = ("import numpy as np; from models.features import TextWord2Vec; "
            f"print(TextWord2Vec(dim=4, epochs=2).fit_transform({DOCS!r}).round(6).tolist())")
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=".").stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_item2vec_aligned_with_items(tmp_path) -> None:
    seqs = [np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([], dtype=np.int64), np.array([2, 0])]
    model = Item2Vec(dim=6, epochs=3, seed=1).fit(seqs, n_items=5)
    assert model.vectors.shape == (5, 6) and model.vectors.dtype == np.float32
    assert model.vectors[:3].any(axis=1).all() and not model.vectors[3:].any()
    again = Item2Vec(dim=6, epochs=3, seed=1).fit(seqs, n_items=5)
    np.testing.assert_array_equal(model.vectors, again.vectors)
    model.save(tmp_path / "i2v")
    np.testing.assert_array_equal(Item2Vec.load(tmp_path / "i2v").vectors, model.vectors)
    with pytest.raises(FeaturizerError):
        Item2Vec().fit(seqs, n_items=2)
