"""Session baselines (S-KNN, V-SKNN, SR, AR) and ``score_histories`` of the other baselines, on hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.baselines import (
    VSKNN, AssociationRules, ContentBased, ImplicitALS, ItemKNN, MostPopular, SequentialRules, SessionKNN, UserKNN,
)
from models.data.dataset import IdMap, Interactions, ItemCatalog
from models.evaluate.registry import available_models, make_model


def sessions_data(seqs: list[list[int]], n_items: int, times: list[list[int]] | None = None) -> Interactions:
    """One user per sequence; by default user u's clicks come after user u-1's (later users more recent)."""
    if times is None:
        clock = iter(range(10**6))
        times = [[next(clock) for _ in s] for s in seqs]
    user = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)]).astype(np.int64)
    item = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    ts = np.concatenate([np.asarray(t, dtype=np.int64) for t in times])
    order = np.argsort(ts, kind="stable")
    return Interactions(user[order], item[order], ts[order], np.ones(len(item), np.float32),
                        IdMap(tuple(f"u{i}" for i in range(len(seqs)))), IdMap(tuple(f"i{i}" for i in range(n_items))))


def catalog_of(inter: Interactions) -> ItemCatalog:
    n = inter.n_items
    return ItemCatalog(inter.items, [f"t{i}" for i in range(n)], [f"word{i % 3} w{i}" for i in range(n)],
                       [[f"g{i % 2}"] for i in range(n)])


def random_sessions(seed: int, n_users: int = 30, n_items: int = 15) -> tuple[Interactions, list[list[int]]]:
    """Sessions of 1-8 distinct items, clicks at distinct random times interleaved across users."""
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(n_items, rng.integers(1, 9), replace=False).tolist() for _ in range(n_users)]
    clock = rng.permutation(sum(map(len, seqs)))
    times, at = [], 0
    for s in seqs:
        times.append(np.sort(clock[at:at + len(s)]).tolist())
        at += len(s)
    return sessions_data(seqs, n_items, times), seqs


def reference_knn(current: list[int], pool: list[list[int]], last_time: list[int], *, k: int,
                  sample_size: int | None, sequential: bool, own: set[int], n_items: int,
                  idf_weighting: float = 0.0) -> np.ndarray:
    """session-rec's ContextKNN / VMContextKNN loops, written plainly (current items distinct)."""
    length = len(current)
    position = {item: p + 1 for p, item in enumerate(current)}  # 1 = oldest
    candidates = [n for n, s in enumerate(pool) if n not in own and set(s) & set(current)]
    candidates = sorted(candidates, key=lambda n: (last_time[n], n), reverse=True)[:sample_size]
    sims = {}
    for n in candidates:
        shared = set(pool[n]) & set(current)
        if sequential:
            sims[n] = sum(position[i] for i in shared) / length ** 2
        else:
            sims[n] = len(shared) / math.sqrt(length * len(set(pool[n])))
    neighbours = sorted(candidates, key=lambda n: (sims[n], last_time[n], n), reverse=True)[:k]
    df = np.bincount(np.concatenate([np.unique(s) for s in pool]), minlength=n_items)
    idf = np.log(sum(1 for s in pool if s) / np.maximum(df, 1))
    scores = np.zeros(n_items)
    for n in neighbours:
        decay = 1.0
        if sequential:
            decay = 1.0 / next(step for step, item in enumerate(reversed(current), 1) if item in pool[n])
        for item in set(pool[n]):
            scores[item] += sims[n] * decay * (1.0 + idf_weighting * idf[item])
    return scores


def chunks(inter: Interactions, seqs: list[list[int]], width: int | None) -> tuple[list, list, list]:
    """Pool sessions cut as the models do (end-aligned chunks of ``width``), their last click times and owners."""
    pool, last_time, owner = [], [], []
    for u, s in enumerate(seqs):
        times = np.sort(inter.timestamp[inter.user == u])
        w = width or len(s)
        cuts = list(range(len(s), 0, -w))[::-1]  # chunk ends, oldest first
        for end in cuts:
            pool.append(s[max(0, end - w):end])
            last_time.append(int(times[end - 1]))
            owner.append(u)
    return pool, last_time, owner


@pytest.mark.parametrize("cls,sequential,idf,width,sample", [
    (SessionKNN, False, 0.0, None, 6), (VSKNN, True, 0.0, None, 6), (VSKNN, True, 1.5, None, 6),
    (SessionKNN, False, 0.0, 3, None), (VSKNN, True, 0.0, 3, 5), (SessionKNN, False, 0.0, 2, 4),
])
def test_knn_equals_the_session_rec_loops(cls, sequential: bool, idf: float, width: int | None,
                                          sample: int | None) -> None:
    inter, seqs = random_sessions(0)
    kwargs = {"idf_weighting": idf} if idf else {}
    model = cls(k=4, sample_size=sample, last_n=3, pool_window=width, **kwargs).fit(inter, catalog_of(inter))
    pool, last_time, owner = chunks(inter, seqs, width)
    got = model.score(np.arange(inter.n_users))
    common = dict(k=4, sample_size=sample, sequential=sequential, n_items=inter.n_items, idf_weighting=idf)
    for u, s in enumerate(seqs):
        own = {n for n, o in enumerate(owner) if o == u}
        want = reference_knn(s[-3:], pool, last_time, own=own, **common)
        np.testing.assert_allclose(got[u], want, rtol=1e-5, atol=1e-7, err_msg=f"user {u}")
    fresh = [[3, 1, 4], [9]]
    want = [reference_knn(h, pool, last_time, own=set(), **common) for h in fresh]
    np.testing.assert_allclose(model.score_histories([np.array(h) for h in fresh]), want, rtol=1e-5, atol=1e-7)


def test_sr_ranks_the_item_that_followed_the_last_item_first() -> None:
    inter = sessions_data([[0, 1, 2], [4, 1, 2], [0, 1, 3], [3, 0]], n_items=6)
    model = SequentialRules().fit(inter, catalog_of(inter))
    scores = model.score_histories([np.array([5, 1])])[0]
    assert np.argmax(scores) == 2 and scores[2] == 2.0 and scores[3] == 1.0
    assert model.rules[0, 2] == 0.5 and model.rules[0, 1] == 2.0 and model.rules[3, 0] == 1.0  # weight 1/gap
    assert model.rules[2].nnz == 0  # nothing ever followed 2
    assert np.all(model.score_histories([np.array([], dtype=np.int64)]) == 0)
    assert SequentialRules(steps=1).fit(inter, catalog_of(inter)).rules[0, 2] == 0
    assert (SequentialRules(pruning=1).fit(inter, catalog_of(inter)).rules.getnnz(axis=1) <= 1).all()


def test_ar_is_symmetric_co_occurrence_of_the_last_item() -> None:
    inter = sessions_data([[0, 1, 2], [2, 1], [1, 3]], n_items=4)
    model = AssociationRules(pruning=None).fit(inter, catalog_of(inter))
    np.testing.assert_array_equal(model.score_histories([np.array([1])])[0], [1, 0, 2, 1])
    assert (model.rules != model.rules.T).nnz == 0


def test_vsknn_prefers_the_neighbour_sharing_the_most_recent_item_where_sknn_ties() -> None:
    # Neighbour 0 shares the older item 1, neighbour 1 the last click 2; equal cosine.
    inter = sessions_data([[1, 5], [2, 6]], n_items=7)
    current = [np.array([1, 2])]
    sknn = SessionKNN().fit(inter, catalog_of(inter)).score_histories(current)[0]
    vsknn = VSKNN().fit(inter, catalog_of(inter)).score_histories(current)[0]
    assert sknn[5] == sknn[6] > 0
    assert vsknn[6] > vsknn[5] > 0
    assert vsknn[6] == pytest.approx(2 / 4) and vsknn[5] == pytest.approx(1 / 4 / 2)  # sim * 1/step


@pytest.mark.parametrize("cls", [SessionKNN, VSKNN])
@pytest.mark.parametrize("width", [None, 2])
def test_a_session_is_never_its_own_neighbour(cls, width: int | None) -> None:
    # Only user 0 ever had items 8 and 9: they can come from user 0's own sessions alone.
    inter = sessions_data([[8, 1, 9, 1], [1, 4], [1, 5]], n_items=10)
    model = cls(pool_window=width).fit(inter, catalog_of(inter))
    scores = model.score(np.array([0]))[0]
    assert scores[9] == 0 and scores[8] == 0 and scores[4] > 0
    assert model.score_histories([np.array([1, 9])])[0, 9] > 0  # an unseen session may match user 0


def test_pool_window_cuts_sequences_into_end_aligned_chunks() -> None:
    inter = sessions_data([[0, 1, 2, 3, 4], [5]], n_items=6)
    model = SessionKNN(pool_window=2).fit(inter, catalog_of(inter))
    assert model._pool.toarray().tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0],
                                              [0, 0, 0, 0, 0, 1]]
    # Item 1 sits in chunk [1, 2] only: 2 is recommended, 3 and 4 (other chunks) are not.
    scores = model.score_histories([np.array([1])])[0]
    assert scores[2] > 0 and scores[3] == scores[4] == 0


@pytest.mark.parametrize("cls", [SessionKNN, VSKNN, SequentialRules, AssociationRules])
def test_fold_in_changes_sessions_and_pool(cls) -> None:
    train = sessions_data([[0, 1], [2, 3], [1, 4]], n_items=6)
    both = sessions_data([[0, 1, 2], [2, 3, 5], [1, 4, 0]], n_items=6)
    model = cls().fit(train, catalog_of(train))
    before = model.score(np.arange(3)).copy()
    fresh = model.score_histories([np.array([2])]).copy()
    model.fold_in(both)
    assert not np.array_equal(model.score(np.arange(3)), before)
    assert not np.array_equal(model.score_histories([np.array([2])]), fresh)  # the pool moved too


def test_last_n_limits_the_current_session() -> None:
    inter = sessions_data([[0, 1, 2, 3], [0, 7], [3, 8]], n_items=9)
    short = SessionKNN(last_n=1).fit(inter, catalog_of(inter)).score(np.array([0]))[0]
    full = SessionKNN(last_n=None).fit(inter, catalog_of(inter)).score(np.array([0]))[0]
    assert short[7] == 0 and short[8] > 0
    assert full[7] > 0 and full[8] > 0
    with pytest.raises(ValueError):
        SessionKNN(last_n=0)


@pytest.mark.parametrize("cls", [SessionKNN, VSKNN, UserKNN])
def test_unseen_history_scores_as_the_user_does_without_its_own_session(cls) -> None:
    """score(u) leaves u out of the pool; score_histories on a pool without u must agree exactly."""
    inter, seqs = random_sessions(1)
    catalog = catalog_of(inter)
    full = cls().fit(inter, catalog)
    for u in (0, 7, 29):
        without = cls().fit(inter.subset(inter.user != u), catalog)
        np.testing.assert_allclose(without.score_histories([np.array(seqs[u])]), full.score(np.array([u])),
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [SequentialRules, AssociationRules, ItemKNN, MostPopular, ContentBased,
                                  lambda: ItemKNN(max_dense_bytes=0)], ids=["sr", "ar", "itemknn", "pop",
                                                                             "content", "itemknn-sparse"])
def test_score_histories_equals_score_for_a_fitted_users_history(make) -> None:
    inter, seqs = random_sessions(2)
    model = make().fit(inter, catalog_of(inter))
    users = np.arange(inter.n_users)
    assert model.scores_histories
    np.testing.assert_allclose(model.score_histories([np.array(s) for s in seqs]), model.score(users),
                               rtol=1e-6, atol=1e-7)


def test_als_score_histories_is_close_to_the_training_users_scores() -> None:
    inter, seqs = random_sessions(3, n_users=200, n_items=40)
    model = ImplicitALS(factors=8, iterations=30).fit(inter, catalog_of(inter))
    users = np.arange(inter.n_users)
    got = model.score_histories([np.array(s) for s in seqs])
    want = model.score(users)
    assert got.shape == want.shape and got.dtype == np.float32
    corr = [np.corrcoef(g, w)[0, 1] for g, w in zip(got, want)]
    assert np.median(corr) > 0.99 and min(corr) > 0.9
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    assert np.all(model.score_histories([np.array([], dtype=np.int64)]) == 0)


def test_registry_names_and_which_models_score_histories() -> None:
    for name in ("sknn", "vsknn", "sr", "ar"):
        assert name in available_models()
    assert isinstance(make_model("vsknn", last_n=5), VSKNN) and make_model("sr").steps == 10
    expected = {"pop": True, "itemknn": True, "userknn": True, "content": True, "als": True, "bpr": False,
                "sknn": True, "vsknn": True, "sr": True, "ar": True}
    for name, scores in expected.items():
        assert make_model(name).scores_histories is scores, name
