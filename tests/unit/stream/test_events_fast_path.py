"""parse_event reads records with orjson and falls back to the stdlib's json: every input must
give what the stdlib-only reading gave before (the same event, or the same reason and detail)."""

import json
import random

import pytest

from stream.core.codec import reject_constant as _reject_constant
from stream.core.events import _validate, parse_event
from stream.errors import InvalidEvent, InvalidRecord

NOW = 1_790_000_000_000
BASE = {"user_id": "u1", "item_id": "i9", "event_type": "play", "timestamp_ms": NOW - 1000, "value": 95.5,
        "context": {"device": "ios", "n": 3}}


def stdlib_parse(raw: bytes):
    """The reading before orjson: UTF-8, then json.loads with NaN/Infinity rejected."""
    try:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidEvent("bad_encoding", f"not UTF-8: {e.reason} at byte {e.start}") from e
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except InvalidRecord as e:
            raise InvalidEvent(e.reason, e.detail) from None
        except (json.JSONDecodeError, RecursionError) as e:
            raise InvalidEvent("bad_json", str(e)[:200]) from e
        if not isinstance(data, dict):
            raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(data).__name__}")
        return _validate(data, NOW)
    except InvalidEvent as e:
        return (e.reason, e.detail)


def outcome(raw: bytes):
    try:
        return parse_event(raw, now_ms=NOW)
    except InvalidEvent as e:
        return (e.reason, e.detail)


def same(raw: bytes) -> None:
    got, want = outcome(raw), stdlib_parse(raw)
    assert got == want, raw[:200]
    if not isinstance(want, tuple):  # same types too (an int context value must not become a float)
        assert [type(v) for v in (got.context or {}).values()] == [type(v) for v in (want.context or {}).values()]
        assert type(got.value) is type(want.value)


SPECIAL = [
    b"{}", b"", b"[]", b"null", b"3", b'"x"', b"[" * 2000 + b"]" * 2000, b"\xef\xbb\xbf" + json.dumps(BASE).encode(),
    json.dumps(BASE).encode() + b"\x00", json.dumps(BASE).encode().replace(b"ios", b"\xff\xfe"),
    json.dumps(BASE).encode().replace(b"ios", b"\xed\xa0\x80"), json.dumps(BASE).encode().replace(b"ios", b"\\ud800"),
    json.dumps(BASE).encode().replace(b"ios", "Só Danço ♪ 🎵".encode()),
    json.dumps(BASE).encode().replace(b'"play"', b'"like","event_type":"click"'),
    json.dumps(BASE).encode().replace(b'{"device"', b'{"n":1,"device":"a","n"'),
]
TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"-0.0", b"10000000000000000000",
          b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808", b"-9223372036854775809",
          b"123456789012345678901234567890", b"9.3e18", b"-9.3e18", b"1.0000000000000000000001", b"0.1e1", b"1E2",
          b"2.2250738585072011e-308", b"4.9406564584124654e-324", b"true", b"null", b'"5"', b"[1]", b'{"a":1}',
          b"[[1]]", b'{"a":{"b":1}}', b"01", b"1.", b".5", b"+1", b'"\\u0000"', b'"\\x"', b'"\t"', b'"\x7f"',
          b"1" * 300, b"[" * 900 + b"]" * 900]


@pytest.mark.parametrize("raw", SPECIAL)
def test_special_records_read_as_the_stdlib_reads_them(raw):
    same(raw)


@pytest.mark.parametrize("field", ["user_id", "item_id", "event_type", "timestamp_ms", "value", "context", "extra"])
def test_every_token_in_every_field_reads_as_the_stdlib_reads_it(field):
    for token in TOKENS:
        base = {k: v for k, v in BASE.items()}
        base[field] = "@@"
        same(json.dumps(base).encode().replace(b'"@@"', token))
        base[field] = BASE["context"]
        if field != "context":
            continue
        for key in ("device", "n"):
            ctx = {**BASE["context"], key: "@@"}
            same(json.dumps({**BASE, "context": ctx}).encode().replace(b'"@@"', token))


def test_random_mutations_read_as_the_stdlib_reads_them():
    rng = random.Random(1)
    valid = [json.dumps({**BASE, "value": rng.uniform(0, 1e9) * rng.choice([1, 1e-12, 1e-300]),
                         "timestamp_ms": NOW - rng.randrange(10**9)}).encode() for _ in range(50)]
    alphabet = b'{}[]",:0123456789.eE+-truefalsnNIiy \\u\t\n\xff\xc3\xa9'
    for _ in range(6000):
        raw = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw) + 1)
            op = rng.random()
            if op < 0.4:
                raw[at:at + 1] = b""
            elif op < 0.8:
                raw[at:at] = bytes([rng.choice(alphabet)])
            else:
                raw[at:at] = rng.choice(TOKENS)
        same(bytes(raw))


def test_floats_read_exactly_as_the_stdlib_reads_them():
    rng = random.Random(2)
    for _ in range(3000):
        literal = rng.choice(["%.17g", "%.25f", "%.3e", "%r"]) % (rng.uniform(0, 2) * 10 ** rng.randint(-320, 9))
        literal = literal.replace("inf", "1")
        same(json.dumps(BASE).encode().replace(b"95.5", literal.encode()))


@pytest.mark.parametrize("field", ["user_id", "item_id", "value"])
@pytest.mark.parametrize("digits", [129, 400, 6000])
def test_huge_integers_are_rejected_not_a_crash(field, digits):
    # Both readings once raised OverflowError (value) or ValueError (str() of ids past 4,300 digits).
    for sign in ("", "-"):
        raw = json.dumps({**BASE, field: "@@"}).encode().replace(b'"@@"', (sign + "7" * digits).encode())
        with pytest.raises(InvalidEvent) as info:
            parse_event(raw, now_ms=NOW)
        assert info.value.reason == ("bad_json" if digits > 4300 else "bad_value" if field == "value" else "bad_id")
