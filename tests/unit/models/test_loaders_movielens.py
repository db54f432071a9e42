"""Loaders on the real MovieLens files (skipped when the data folder is absent); counts from the READMEs."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.dataset import leave_last_out, load_dataset
from models.data.loaders import default_data_dir

DATA = default_data_dir()


@pytest.mark.skipif(not (DATA / "ml-100k" / "u.data").exists(), reason="ml-100k not in STREAMREC_DATASETS_DIR")
def test_ml100k_counts_match_the_readme() -> None:
    inter, catalog = load_dataset("ml-100k")
    assert (len(inter), inter.n_users, inter.n_items) == (100_000, 943, 1_682)
    assert len(catalog) == 1_682
    assert catalog.title[inter.items.index("1")] == "Toy Story (1995)"
    assert catalog.tags[inter.items.index("1")] == ["animation", "children's", "comedy"]
    # u.item is latin-1: this title has an accented character.
    assert any("é" in t for t in catalog.title)
    # 1997-09-20 03:05:10 UTC .. 1998-04-22 23:10:38 UTC
    assert inter.timestamp.min() == 874_724_710_000 and inter.timestamp.max() == 893_286_638_000
    split = leave_last_out(inter, catalog)
    assert len(split.test) == len(split.valid) == 943


@pytest.mark.skipif(not (DATA / "ml-1m" / "movies.dat").exists(), reason="ml-1m not in STREAMREC_DATASETS_DIR")
def test_ml1m_prefix_counts_match_the_readme() -> None:
    inter, catalog = load_dataset("ml-1m")
    full = (DATA / "ml-1m" / "ratings.dat").exists() or (DATA / "ml-1m" / "ratings.dat.gz").exists()
    expected = (1_000_209, 6_040) if full else (487_650, 2_999)
    assert (len(inter), inter.n_users) == expected
    assert len(catalog) == inter.n_items and np.all(inter.weight == 1.0)
    assert "Misérables" in " ".join(catalog.title)
    first = (inter.user == inter.users.index("1")) & (inter.item == inter.items.index("1193"))
    assert inter.timestamp[first].tolist() == [978_300_760_000]
