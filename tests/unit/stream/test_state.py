import numpy as np
import pytest

from stream.core.state import UserState, apply_event, recency_weighted_mean


def test_apply_event_appends_counts_and_dedupes_by_offset():
    s = UserState()
    assert apply_event(s, "i1", "play", 1000, 120.0, offset=5)
    assert apply_event(s, "i2", "skip", 2000, 3.0, offset=6)
    assert not apply_event(s, "i3", "click", 3000, None, offset=6)  # redelivered offset
    assert not apply_event(s, "i3", "click", 3000, None, offset=2)  # older offset
    assert s.items == ["i1", "i2"]
    assert s.counts == {"play": 1, "skip": 1}
    assert s.history[0] == ("i1", "play", 1000, 2.0) and s.history[1][3] == -1.0
    assert s.last_offset == 6


def test_history_is_bounded_to_the_newest():
    s = UserState()
    for n in range(10):
        apply_event(s, f"i{n}", "click", n, None, offset=n, max_history=4)
    assert s.items == ["i6", "i7", "i8", "i9"]
    assert s.n_events == 10


def test_json_round_trip_keeps_the_float32_embedding_exactly():
    s = UserState()
    apply_event(s, "i1", "like", 1, None, offset=0)
    s.embedding = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    s.last_recs = ["i4", "i5"]
    back = UserState.from_json(s.to_json())
    assert back.history == s.history and back.counts == s.counts and back.last_recs == s.last_recs
    assert back.embedding.dtype == np.float32 and np.array_equal(back.embedding, s.embedding)
    assert UserState.from_json(None).history == []


def test_recency_weighted_mean_prefers_recent_and_pushes_away_skips():
    a, b = np.eye(2, dtype=np.float32)
    v = recency_weighted_mean(np.stack([a, b]), np.array([1.0, 1.0]), half_life=1.0)
    assert v[1] > v[0]  # the newer item counts more
    assert np.linalg.norm(v) == pytest.approx(1.0)
    v = recency_weighted_mean(np.stack([a, b]), np.array([1.0, -1.0]), half_life=100.0)
    assert v[1] < 0 < v[0]
    assert recency_weighted_mean(np.stack([a]), np.array([-1.0])) is None
    assert recency_weighted_mean(np.zeros((0, 2), np.float32), np.zeros(0)) is None


# --- fast (orjson) state bytes and the batched user vectors ---------------------------------

import json  # noqa: E402

from stream.core.state import recency_weighted_means  # noqa: E402


def _random_state(rng: np.random.Generator, n: int, item=lambda k: f"i{k}") -> UserState:
    s = UserState()
    for k in range(n):
        etype = ["play", "click", "skip", "like", "purchase"][int(rng.integers(0, 5))]
        apply_event(s, item(int(rng.integers(0, 50))), etype, 1_767_225_600_000 + k,
                    float(rng.uniform(0, 400)), offset=k, max_history=30)
    s.embedding = rng.standard_normal(16).astype(np.float32)
    s.model_version, s.last_recs = "content-v0", ["i1", "i2"]
    return s


def test_to_bytes_is_the_stdlib_json_of_to_json():
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 45):
        s = _random_state(rng, n)
        assert s.to_bytes() == json.dumps(s.to_json(), separators=(",", ":")).encode()
    s.embedding = None
    assert s.to_bytes() == json.dumps(s.to_json(), separators=(",", ":")).encode()


def test_from_bytes_equals_from_json_of_the_stdlib_json():
    rng = np.random.default_rng(4)
    for s in (_random_state(rng, 12), _random_state(rng, 30, item=lambda k: f"träck-{k}-♪")):
        stdlib = json.dumps(s.to_json(), separators=(",", ":")).encode()  # escapes non-ASCII
        for raw in (stdlib, s.to_bytes(), bytearray(stdlib), stdlib.decode()):
            back, ref = UserState.from_bytes(raw), UserState.from_json(json.loads(stdlib))
            assert back.to_json() == ref.to_json() == s.to_json()
            assert back.embedding.dtype == np.float32 and back.embedding.flags.writeable
        assert json.loads(s.to_bytes()) == json.loads(stdlib)  # same JSON, UTF-8 instead of escapes
    assert UserState.from_bytes(None) == UserState() == UserState.from_bytes(b"{}")


def test_from_bytes_reads_what_only_the_stdlib_reads():
    raw = b'{"history":[["i1","play",1,NaN]],"embedding":null,"counts":{"play":1},"last_offset":3}'
    state = UserState.from_bytes(raw)
    assert state.last_offset == 3 and state.history[0][:3] == ("i1", "play", 1) and np.isnan(state.history[0][3])


def test_apply_event_accepts_members_and_names_and_rejects_unknown_types():
    from models.feedback import EventType
    s = UserState()
    assert apply_event(s, "i1", EventType.LIKE, 1, None, offset=0)
    assert apply_event(s, "i2", "like", 2, None, offset=1)
    assert s.history == [("i1", "like", 1, 2.0), ("i2", "like", 2, 2.0)] and s.counts == {"like": 2}
    with pytest.raises(ValueError):
        apply_event(s, "i3", "zap", 3, None, offset=2)


def _reference_means(vectors, positions, weights, bounds, half_life=10.0):
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        out.append(recency_weighted_mean(vectors[positions[a:b]], weights[a:b].astype(np.float32), half_life)
                   if b > a else None)
    return out


@pytest.mark.parametrize("n_users", [1, 2, 3, 4, 5, 17, 120])
def test_recency_weighted_means_equal_the_per_user_means(n_users):
    rng = np.random.default_rng(n_users)
    vectors = rng.standard_normal((300, 24)).astype(np.float32)
    lengths = rng.integers(0, 60, n_users)
    lengths[0] = 700 if n_users > 2 else lengths[0]  # longer than the cached decay table
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    positions = rng.integers(0, 300, bounds[-1])
    weights = np.round(rng.uniform(-1, 3, bounds[-1]), 4)
    if n_users > 1:
        weights[bounds[1]:bounds[2]] = -1.0  # only skips: no vector
    got = recency_weighted_means(vectors, positions, weights, bounds)
    want = _reference_means(vectors, positions, weights, bounds)
    assert [g is None for g in got] == [w is None for w in want]
    for g, w in zip(got, want):
        if w is not None:
            assert g.dtype == np.float32 and g.shape == (24,)
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    for half_life in (1.0, 37.5):
        got = recency_weighted_means(vectors, positions, weights, bounds, half_life)
        want = _reference_means(vectors, positions, weights, bounds, half_life)
        for g, w in zip(got, want):
            assert (g is None) == (w is None) and (w is None or np.abs(g - w).max() <= 1e-6)


def test_recency_weighted_means_of_no_users_or_empty_histories():
    vectors = np.eye(3, dtype=np.float32)
    assert recency_weighted_means(vectors, np.zeros(0, np.int64), np.zeros(0), np.array([0])) == []
    assert recency_weighted_means(vectors, np.zeros(0, np.int64), np.zeros(0), np.array([0, 0, 0])) == [None, None]


def test_stored_bytes_that_are_not_a_state_raise_bad_state():
    import pytest

    from stream.errors import InvalidRecord

    good = UserState(history=[["i1", "play", 1, 1.0]], embedding=np.ones(4, np.float32), counts={"play": 1},
                     last_offset=3, model_version="v1", last_recs=["i2"])
    assert UserState.from_bytes(good.to_bytes()).to_json() == good.to_json()
    for raw in (b"\xff\xfe", b"{not json", b"[1, 2]", b'"text"', b'{"history": 5}', b'{"history": [[1, 2]]}',
                b'{"history": [["i1", "play", 1, "heavy"]]}', b'{"counts": {"play": "x"}}',
                b'{"last_recs": [1]}', b'{"embedding": "***"}', b'{"embedding": 7}', b'{"last_offset": "9"}',
                b'{"history": [["i1", "play", true, 1]]}', b'{"last_offset": true}', b'{"history": [["i1", "play", 1]]}',
                b'{"history": [["i1", "play", 1, 1, 5]]}', b'{"model_version": 3}', b'{"counts": {"play": 1.5}}',
                b"[" * 10_000):
        with pytest.raises(InvalidRecord) as caught:
            UserState.from_bytes(raw)
        assert caught.value.reason == "bad_state", raw[:40]


def test_the_state_bound_holds_for_the_largest_state():
    from stream.core.codec import MAX_ID_CHARS
    from stream.core.state import max_state_bytes

    worst_id = "\"" * (MAX_ID_CHARS // 2) + "\U0001F600" * (MAX_ID_CHARS // 2)  # escaped quotes, 4-byte chars
    state = UserState(embedding=np.full(512, -1.234567e-30, np.float32), last_offset=2**62,
                      model_version="v" * 128, last_recs=[worst_id] * 100,
                      counts={t: 10**15 for t in ("click", "play", "skip", "like", "purchase")})
    for _ in range(300):
        apply_event(state, worst_id, "purchase", 10**15, 1e9, state.last_offset + 1, max_history=300)
    assert len(state.to_bytes()) <= max_state_bytes(300, 100, 512)


def test_the_typed_decode_reads_every_state_as_the_general_path_does():
    # from_bytes decodes and type-checks in one pass; the general path (orjson or the stdlib, then
    # _check_decoded) must give the same state for everything it accepts.
    from stream.core.state import loads

    valid = [b"{}", b'{"history": []}', b'{"history": [["i1", "play", 1, 2]], "extra": {"x": [1]}}',
             rb'{"history": [["\u00e9t\u00e9", "skip", 5, -1.0]], "counts": {"skip": 1}, "last_offset": 9}',
             UserState([("i1", "play", 1, 0.5), ("i2", "cart", 2, 3)], np.arange(3, dtype=np.float32), {"play": 1},
                       4, "v1", ["i3"]).to_bytes(),
             b'{"history": [["i1", "play", 18446744073709551615, 1]]}']  # past int64: the stdlib's
    for raw in valid:
        general = UserState._from_decoded(loads(raw), copy=False)
        got = UserState.from_bytes(raw)
        assert got.to_json() == general.to_json(), raw
        assert all(type(h) is tuple for h in got.history)
