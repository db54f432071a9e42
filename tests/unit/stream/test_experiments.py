"""stream.core.experiments: deterministic arm assignment, validation and per-arm statistics."""

import dataclasses
import json
import math

import numpy as np
import pytest

from stream.core.announcements import InvalidAnnouncement, ModelAnnouncement

from stream.core.experiments import (
    Arm,
    Experiment,
    InvalidExperiment,
    assignment_point,
    add_counts,
    announcements_of,
    compare,
    counts_key,
    decode_counts,
    encode_counts,
    experiment_record,
    format_results,
    new_experiment,
    parse_model_update,
    promotion,
    sum_counts,
    parse_arm_option,
    parse_experiment,
    two_proportion_test,
    wilson_interval,
)

NOW = 1_764_584_100_000


def ab(name="ndcg-v2", control=0.8, treatment=0.2) -> Experiment:
    return new_experiment(name, [Arm("control", "v1", control), Arm("treatment", "v2", treatment)], NOW)


def test_assignment_is_a_function_of_experiment_and_user_only():
    one, again = ab(), parse_experiment(ab().to_dict())
    users = [f"u{i:05d}" for i in range(2000)]
    assert [one.arm_of(u).name for u in users] == [again.arm_of(u).name for u in users]
    assert 0 <= assignment_point("x", "u1") < 1
    assert assignment_point("x", "u1") != assignment_point("y", "u1")


def test_shares_are_met_and_two_experiments_assign_independently():
    users = [f"user-{i}" for i in range(100_000)]
    first = np.array([ab("first").arm_of(u).name == "treatment" for u in users])
    second = np.array([ab("second", 0.5, 0.5).arm_of(u).name == "treatment" for u in users])
    assert abs(first.mean() - 0.2) < 0.005  # ~4 standard errors of 0.00126
    assert abs(second.mean() - 0.5) < 0.006
    # Independent: the treatment share of the second is the same among the first's arms.
    assert abs(second[first].mean() - second[~first].mean()) < 0.02


def test_a_three_arm_experiment_and_the_command_line_form():
    arms = [parse_arm_option(a) for a in ("a=v1:0.5", "b=v2:0.25", "c=model.2026-12-01:0.25")]
    assert arms[2] == Arm("c", "model.2026-12-01", 0.25)
    experiment = new_experiment("three", arms, NOW)
    counts = {n: 0 for n in "abc"}
    for i in range(20_000):
        counts[experiment.arm_of(str(i)).name] += 1
    assert abs(counts["a"] / 20_000 - 0.5) < 0.02 and abs(counts["c"] / 20_000 - 0.25) < 0.02
    assert experiment.versions() == ["v1", "v2", "model.2026-12-01"]


@pytest.mark.parametrize("text", ["control", "control=v1", "=v1:0.5", "control=:0.5", "control=v1:half"])
def test_bad_arm_options_say_the_form(text):
    with pytest.raises(InvalidExperiment):
        parse_arm_option(text)


@pytest.mark.parametrize("change, reason", [
    ({"name": "../etc"}, "bad_name"),
    ({"arms": [{"name": "a", "version": "v1", "share": 1.0}]}, "bad_arms"),
    ({"arms": [{"name": "a", "version": "v1", "share": 0.5}, {"name": "a", "version": "v2", "share": 0.5}]},
     "bad_arms"),
    ({"arms": [{"name": "a", "version": "v1", "share": 0.7}, {"name": "b", "version": "v2", "share": 0.7}]},
     "bad_share"),
    ({"arms": [{"name": "a", "version": "v1", "share": float("nan")}, {"name": "b", "version": "v2", "share": 1}]},
     "bad_share"),
    ({"arms": [{"name": "a", "version": "/tmp/x", "share": 0.5}, {"name": "b", "version": "v2", "share": 0.5}]},
     "bad_version"),
    ({"arms": "ab"}, "bad_arms"),
    ({"arms": [{"name": str(i), "version": "v", "share": 0.1} for i in range(10)]}, "bad_arms"),
    ({"started_ms": "yesterday"}, "wrong_type"),
    ({"started_ms": None}, "missing_field"),
    ({"promoted": "nobody"}, "bad_arms"),
    ({"arms": [{"name": "a", "version": "v1"}, {"name": "b", "version": "v2", "share": 1}]}, "bad_share"),
])
def test_hostile_definitions_are_refused_with_a_reason(change, reason):
    with pytest.raises(InvalidExperiment) as caught:
        parse_experiment(ab().to_dict() | change)
    assert caught.value.reason == reason
    with pytest.raises(InvalidExperiment):
        parse_experiment(["not", "an", "object"])


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson_interval(10, 100)
    # Wilson (1927) for 10/100 at 95%: 0.0552 .. 0.1744
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0


def test_two_proportion_test_matches_scipy():
    from scipy.stats import norm

    diff, z, p = two_proportion_test(100, 1000, 130, 1000)
    pooled = 230 / 2000
    want_z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert diff == pytest.approx(0.03) and z == pytest.approx(want_z)
    assert p == pytest.approx(2 * norm.sf(want_z))
    assert two_proportion_test(0, 0, 5, 10) == (0.0, 0.0, 1.0)
    assert two_proportion_test(0, 10, 0, 10)[2] == 1.0


def test_a_better_arm_is_significant_and_a_copy_is_not_in_simulation():
    rng = np.random.default_rng(0)
    experiment = ab(control=0.5, treatment=0.5)
    better = {"control": (20_000, int(rng.binomial(20_000, 0.10))),
              "treatment": (20_000, int(rng.binomial(20_000, 0.12)))}
    result = compare(experiment, better)
    treatment = result["arms"][1]
    assert treatment["significant"] and treatment["difference"] > 0
    assert treatment["interval_95"][0] < treatment["hit_rate"] < treatment["interval_95"][1]
    # A copy of the same version: significant in about 5% of experiments, as the test promises.
    false_positives = sum(
        compare(experiment, {"control": (5000, int(rng.binomial(5000, 0.1))),
                             "treatment": (5000, int(rng.binomial(5000, 0.1)))})["arms"][1]["significant"]
        for _ in range(400))
    assert 5 <= false_positives <= 40  # 20 expected; a binomial(400, 0.05) is in [8, 33] 99.8% of the time


def test_compare_reports_every_arm_even_without_trials():
    result = compare(ab(), {})
    assert [a["arm"] for a in result["arms"]] == ["control", "treatment"]
    assert result["arms"][0]["hit_rate"] is None and result["arms"][1]["p_value"] == 1.0
    assert result["running"] and result["control"] == "control"


def test_an_experiment_record_round_trips_and_model_updates_records_are_told_apart():
    key, value = experiment_record(ab())
    assert key == b"experiment:ndcg-v2"
    assert parse_model_update(value) == ab()
    version = parse_model_update(ModelAnnouncement("v3", NOW).encode())
    assert isinstance(version, ModelAnnouncement) and version.version == "v3"
    with pytest.raises(InvalidExperiment) as e:
        parse_model_update(json.dumps({"experiment": {"name": "x", "arms": "all"}}))
    assert e.value.reason == "bad_arms"
    with pytest.raises(InvalidAnnouncement) as e:
        parse_model_update(b'{"neither": 1}')
    assert e.value.reason == "missing_field"
    with pytest.raises(InvalidExperiment) as e:
        parse_model_update(b"\xff")
    assert e.value.reason == "bad_encoding"


def test_a_stop_that_promotes_is_an_announcement_of_the_arms_version_in_topic_order():
    running = ab()
    stopped = dataclasses.replace(running, stopped_ms=NOW + 5, promoted="treatment")
    assert promotion(running) is None and promotion(dataclasses.replace(running, stopped_ms=NOW + 5)) is None
    assert promotion(stopped).version == "v2" and promotion(stopped).extra == {"promoted_by": "ndcg-v2"}
    updates = [ModelAnnouncement("v1", 1), ModelAnnouncement("v2", 2), running, ModelAnnouncement("v3", 3), stopped]
    assert [a.version for a in announcements_of(updates)] == ["v1", "v2", "v3", "v2"]


def test_counts_add_up_by_arm_and_hostile_counts_are_refused():
    one = add_counts({}, {"control": 10, "treatment": 4}, {"control": 3, "treatment": 1})
    two = add_counts(decode_counts(encode_counts(one)), {"control": 5}, {"control": 5})
    assert two == {"control": (15, 8), "treatment": (4, 1)}
    assert sum_counts([two, {"treatment": (6, 2)}, {}]) == {"control": (15, 8), "treatment": (10, 3)}
    assert counts_key(ab()) == f"ndcg-v2@{NOW}".encode()
    for hostile, reason in ((b'{"a": [3, 4]}', "bad_counts"), (b'{"a": [-1, 0]}', "bad_counts"),
                            (b'{"a": [1.5, 0]}', "bad_counts"), (b'{"a": [1, 0, 0]}', "bad_counts"),
                            (b"[1]", "not_an_object"), (b"x" * 20_000, "too_large"), (None, "not_an_object")):
        with pytest.raises(InvalidExperiment) as e:
            decode_counts(hostile)
        assert e.value.reason == reason, hostile


def test_the_results_table_shows_every_arm_with_its_interval_and_test():
    lines = format_results(compare(ab(), {"control": (1000, 100), "treatment": (1000, 160)}))
    assert lines[0] == "experiment ndcg-v2 (running)"
    control, treatment = lines[2].split(), lines[3].split()
    assert control[:6] == ["control", "v1", "0.80", "1000", "100", "0.1000"] and "control" in control[6:]
    assert treatment[:6] == ["treatment", "v2", "0.20", "1000", "160", "0.1600"]
    assert treatment[-2] == "+0.0600" and treatment[-1].endswith("*")  # p < 0.001: significant
    stopped = dataclasses.replace(ab(), stopped_ms=NOW + 1, promoted="treatment")
    assert format_results(compare(stopped, {}) | {"partitions_counted": [0, 1]})[0] == \
        "experiment ndcg-v2 (stopped, promoted treatment; 2 partitions counted)"
