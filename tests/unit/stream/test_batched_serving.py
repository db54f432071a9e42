"""The batched serving path (flattened histories, batched user vectors, exclusions and reasons)
against a slow per-user reference: the implementation it replaced, kept here verbatim."""

import json

import numpy as np
import orjson
import pytest

from models.data.synthetic import generate_demo_dataset
from stream.core.recommendations import Recommendation
from stream.core.records import Record
from stream.core.state import UserState, recency_weighted_mean
from stream.core.trending import TrendingCounter
from stream.serving.model import VERBS, ModelHolder, ServingModel, bootstrap_model
from stream.serving.processor import BatchProcessor

NOW = 1_767_300_000_000


# --- the reference: the per-user implementation before batching ---------------------------------
def ref_user_vectors(model: ServingModel, histories):
    positions, weights = [], []
    for history in histories:
        rows = [(model.positions[h[0]], float(h[3])) for h in history if h[0] in model.positions]
        positions.append(np.array([r[0] for r in rows], dtype=np.int64))
        weights.append(np.array([r[1] for r in rows], dtype=np.float32))
    if model.user_encoder is not None:
        out = model.user_encoder(positions, weights)
        return [None if not np.isfinite(row).all() else row.astype(np.float32) for row in out]
    return [recency_weighted_mean(model.vectors[p], w) if len(p) else None for p, w in zip(positions, weights)]


def ref_search(model: ServingModel, queries, k, exclude):
    excluded = [{model.positions[i] for i in ex if i in model.positions} for ex in exclude]
    scores, ids = model.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, exclude=excluded)
    return [[(model.item_ids[int(i)], float(s)) for s, i in zip(srow, irow) if i >= 0]
            for srow, irow in zip(scores, ids)]


def ref_explain(model: ServingModel, recommended, history):
    past = [h for h in history if h[0] in model.positions and float(h[3]) > 0]
    if not past or not recommended:
        return [(i, s, "popular right now") for i, s in recommended]
    past_vecs = model.vectors[[model.positions[h[0]] for h in past]]
    rec_vecs = model.vectors[[model.positions[i] for i, _ in recommended]]
    nearest = np.argmax(rec_vecs @ past_vecs.T, axis=1)
    return [(item, score, f"because you {VERBS.get(past[int(j)][1], 'chose')} "
                          f"{model.titles.get(past[int(j)][0], past[int(j)][0])}")
            for (item, score), j in zip(recommended, nearest)]


def ref_recommend(model, trending, top_k, states: dict[str, UserState]):
    users = list(states)
    vectors = ref_user_vectors(model, [states[u].history for u in users])
    personal = [u for u, v in zip(users, vectors) if v is not None]
    found = {}
    if personal:
        queries = np.stack([v for v in vectors if v is not None])
        found = dict(zip(personal, ref_search(model, queries, top_k, [states[u].consumed() for u in personal])))
    out = {}
    for user, vector in zip(users, vectors):
        if vector is not None:
            items, source = ref_explain(model, found.get(user, []), states[user].history), "personal"
        else:
            items, source = ref_explain(model, trending.top(top_k, states[user].consumed()), []), "trending"
        out[user] = (vector, source, [{"item_id": i, "score": round(s, 6), "reason": r} for i, s, r in items])
    return out


# --- data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=60, n_items=150, events_per_user=30, seed=5)


def random_histories(data, rng, n_users, unknown=True):
    ids = [it["item_id"] for it in data.items] + (["gone-1", "gone-2"] if unknown else [])
    kinds = ["play", "click", "skip", "like", "purchase", "zap"]
    out = []
    for u in range(n_users):
        n = int(rng.integers(0, 70))
        rows = [[ids[int(rng.integers(0, len(ids)))], kinds[int(rng.integers(0, 6))], 1_767_000_000_000 + k,
                 float(np.round(rng.uniform(-1, 3), 4))] for k in range(n)]
        if u % 7 == 3:  # only skips: no vector
            rows = [[r[0], "skip", r[2], -1.0] for r in rows]
        if u % 11 == 5 and rows:  # one item again and again, with different verbs (argmax ties)
            rows = [[rows[0][0], kinds[k % 4], 1_767_000_000_000 + k, 1.0] for k in range(len(rows))]
        out.append(rows)
    return out


@pytest.mark.parametrize("n_users", [1, 2, 5, 40])
def test_user_vectors_equal_the_per_user_reference(data, n_users):
    model = bootstrap_model(data.items, dim=32)
    histories = random_histories(data, np.random.default_rng(n_users), n_users)
    got, want = model.vectors_of(model.histories(histories)), ref_user_vectors(model, histories)
    assert [g is None for g in got] == [w is None for w in want]
    for g, w in zip(got, want):
        if w is not None:
            assert g.dtype == np.float32 and np.abs(g - w).max() <= 1e-6


def test_trained_encoder_gets_the_same_inputs(data):
    model = bootstrap_model(data.items, dim=32)
    histories = random_histories(data, np.random.default_rng(9), 12)
    seen = []

    def encoder(positions, weights):
        seen.append(([p.copy() for p in positions], [w.copy() for w in weights]))
        out = np.full((len(positions), 32), np.nan, dtype=np.float32)
        for r, (p, w) in enumerate(zip(positions, weights)):
            if (w > 0).any():
                out[r] = model.vectors[p[w > 0]].mean(axis=0)
        return out

    model.user_encoder = encoder
    got = model.vectors_of(model.histories(histories))
    want = ref_user_vectors(model, histories)
    (new_p, new_w), (old_p, old_w) = seen
    for a, b in zip(new_p + new_w, old_p + old_w):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [g is None for g in got] == [w is None for w in want]
    assert all(w is None or np.array_equal(g, w) for g, w in zip(got, want))


def test_known_positions_are_what_search_excluded(data):
    model = bootstrap_model(data.items, dim=32)
    histories = random_histories(data, np.random.default_rng(2), 30)
    flat = model.histories(histories)
    for users in ([0], [3, 1, 2], list(range(30)), list(range(29, -1, -2))):
        got = flat.known_positions(users)
        for u, positions in zip(users, got):
            want = sorted({model.positions[h[0]] for h in histories[u] if h[0] in model.positions})
            assert positions.tolist() == want
            assert flat.consumed(u) == {h[0] for h in histories[u]}


def test_search_and_reasons_equal_the_reference(data):
    model = bootstrap_model(data.items, dim=32)
    rng = np.random.default_rng(7)
    histories = random_histories(data, rng, 50)
    flat = model.histories(histories)
    vectors = model.vectors_of(flat)
    users = [u for u, v in enumerate(vectors) if v is not None]
    queries = np.stack([vectors[u] for u in users])
    positions, scores = model.search_positions(queries, 8, flat.known_positions(users))
    ref = ref_search(model, queries, 8, [{h[0] for h in histories[u]} for u in users])
    assert [[(model.item_ids[p], s) for p, s in zip(ps, ss)] for ps, ss in zip(positions, scores)] == ref
    reasons = model.reasons(flat, users, positions)
    for u, found, why in zip(users, ref, reasons):
        assert [r for _, _, r in ref_explain(model, found, histories[u])] == why
    # Arbitrary items (not search results), and users without positives or without items.
    everyone = list(range(len(histories)))
    picks = [[int(p) for p in rng.integers(0, model.n_items, int(rng.integers(0, 6)))] for _ in everyone]
    for u, why in zip(everyone, model.reasons(flat, everyone, picks)):
        recommended = [(model.item_ids[p], 0.0) for p in picks[u]]
        assert [r for _, _, r in ref_explain(model, recommended, histories[u])] == why


def test_processor_equals_the_per_user_reference_on_random_batches(data):
    model = bootstrap_model(data.items, dim=32)
    rng = np.random.default_rng(11)
    trending = TrendingCounter()
    processor = BatchProcessor(ModelHolder(model), trending, top_k=6, max_history=40)
    events = list(data.events)
    store: dict[str, bytes] = {}
    offset = 0
    for size in (1, 3, 25, 200, 7, 400):
        batch = []
        for _ in range(size):
            e = events[int(rng.integers(0, len(events)))]
            batch.append(Record("events", 0, offset, e["user_id"].encode(), json.dumps(e).encode(), NOW))
            offset += 1
        result = processor.process(batch, lambda u, r: UserState.from_bytes(store.get(u)), now_ms=NOW)
        want = ref_recommend(model, trending, 6, {u: up.state for u, up in result.updates.items()})
        for user, update in result.updates.items():
            vector, source, items = want[user]
            rec = update.recommendation.to_dict()
            assert (rec["source"], rec["items"]) == (source, items)
            assert (vector is None) or np.abs(update.state.embedding - vector).max() <= 1e-6
            assert update.state.last_recs == [i["item_id"] for i in items]
            assert list(rec) == ["user_id", "items", "source", "model_version", "index_version", "arm",
                                 "event_timestamp_ms", "event_offset", "generated_ms", "published_ms"]
            assert rec["arm"] is None  # no experiment
            store[user] = update.state.to_bytes()


def test_a_batch_in_slices_of_records_then_of_users_equals_the_batch_at_once(data):
    """The worker applies a batch a slice of records at a time, then recommends its users a slice
    at a time (yielding between): the recommendations, vectors and states are those of one call."""
    model = bootstrap_model(data.items, dim=32)
    rng = np.random.default_rng(5)
    events = list(data.events)
    batch = []
    for offset in range(300):
        e = events[int(rng.integers(0, len(events)))]
        batch.append(Record("events", 0, offset, e["user_id"].encode(), json.dumps(e).encode(), NOW))
    whole = BatchProcessor(ModelHolder(model), TrendingCounter(), top_k=6).process(
        batch, lambda u, r: UserState(), now_ms=NOW)
    holder = ModelHolder(model)
    sliced_processor = BatchProcessor(holder, TrendingCounter(), top_k=6)
    # Applied 7 records at a time, and a new version served meanwhile: the batch keeps its snapshot.
    sliced = None
    for start in range(0, len(batch), 7):
        sliced = sliced_processor.apply(batch[start:start + 7], lambda u, r: UserState(), now_ms=NOW, into=sliced)
        holder.swap(bootstrap_model(data.items, dim=16))
    assert sliced.model is model and all(u.recommendation is None for u in sliced.updates.values())
    assert sliced.applied == whole.applied and sliced.online_trials == whole.online_trials
    users = list(sliced.updates)
    assert len(users) > 14  # several slices
    for start in range(0, len(users), 4):
        sliced_processor.recommend_updates(sliced, users[start:start + 4], NOW)
    assert list(sliced.updates) == list(whole.updates)
    for user, update in whole.updates.items():
        other = sliced.updates[user]
        mine, theirs = other.recommendation.to_dict(), update.recommendation.to_dict()
        # Scores only to float32 rounding: a batched search sums in another order per batch size.
        assert [(i["item_id"], i["reason"]) for i in mine.pop("items")] == \
            [(i["item_id"], i["reason"]) for i in theirs["items"]]
        assert [i["score"] for i in other.recommendation.to_dict()["items"]] == \
            pytest.approx([i["score"] for i in theirs.pop("items")], abs=1e-5)
        assert mine == theirs
        assert other.state.history == update.state.history and other.state.last_recs == update.state.last_recs
        if update.state.embedding is None:  # served trending items: no vector
            assert other.state.embedding is None
        else:
            assert np.allclose(other.state.embedding, update.state.embedding, atol=1e-6)
    assert sliced.retrieval_seconds > 0


def test_encoded_recommendation_is_the_stdlib_json():
    rec = Recommendation("u1", ["i1", "i2"], [0.1234567, 5e-06], ["because you played Só Danço", "popular right now"],
                         "personal", "content-v0", "content-v0-1", NOW, 2**40, NOW, NOW + 1)
    raw = rec.encode()
    want = {"user_id": "u1", "items": [{"item_id": "i1", "score": 0.123457, "reason": "because you played Só Danço"},
                                       {"item_id": "i2", "score": 5e-06, "reason": "popular right now"}],
            "source": "personal", "model_version": "content-v0", "index_version": "content-v0-1", "arm": None,
            "event_timestamp_ms": NOW, "event_offset": 2**40, "generated_ms": NOW, "published_ms": NOW + 1}
    assert isinstance(raw, bytes) and orjson.loads(raw) == json.loads(json.dumps(want)) == want
    ascii_only = Recommendation("u1", ["i1"], [0.5], ["x"], "personal", "v", "v-1", NOW, 3, NOW, None)
    assert ascii_only.encode() == json.dumps(ascii_only.to_dict(), separators=(",", ":")).encode()
    rec.event_offset = 2**70  # past 64 bits: orjson refuses, the stdlib writes it
    assert json.loads(rec.encode())["event_offset"] == 2**70
    assert Recommendation.parse(rec.encode()).to_dict() == rec.to_dict()
