"""Serving an experiment (stream.serving.model.ModelHolder, BatchProcessor): each user gets the
recommendation of their arm's version, and online trials count by arm."""

import dataclasses
import json

import pytest

from models.data.synthetic import generate_demo_dataset
from stream.core.experiments import Arm, new_experiment
from stream.core.records import Record
from stream.core.state import UserState
from stream.core.trending import TrendingCounter
from stream.serving.model import ModelHolder, bootstrap_model
from stream.serving.processor import BatchProcessor

NOW = 1_767_400_000_000  # after the generated events (2026-01)


@pytest.fixture(scope="module")
def data():
    return generate_demo_dataset(n_users=80, n_items=300, events_per_user=6, seed=4)


@pytest.fixture(scope="module")
def versions(data):
    a = dataclasses.replace(bootstrap_model(data.items, dim=32), model_version="v-a")
    b = dataclasses.replace(bootstrap_model(data.items, dim=16), model_version="v-b")
    return {"v-a": a, "v-b": b}


def records(events, start=0):
    return [Record("events", 0, start + n, e["user_id"].encode(), json.dumps(e).encode(), NOW)
            for n, e in enumerate(events)]


def run(holder, batch, store):
    processor = BatchProcessor(holder, TrendingCounter(), top_k=5)
    result = processor.process(batch, lambda u, r: UserState.from_bytes(store.get(u)), now_ms=NOW)
    for user, update in result.updates.items():
        store[user] = update.state.to_bytes()
    return result


def test_each_user_is_served_by_their_arms_version(data, versions):
    experiment = new_experiment("dims", [Arm("control", "v-a", 0.5), Arm("treatment", "v-b", 0.5)], NOW)
    holder = ModelHolder(versions["v-a"])
    holder.start_experiment(experiment, versions)
    result = run(holder, records(data.events), {})
    arms = {u: up.recommendation.arm for u, up in result.updates.items()}
    assert set(arms.values()) == {"control", "treatment"}
    personal = 0
    for user, update in result.updates.items():
        arm = experiment.arm_of(user)
        rec = update.recommendation
        assert rec.arm == arm.name and rec.model_version == arm.version == update.state.model_version
        # Exactly what that version alone serves the user (trending answers depend on everyone's events).
        alone = run(ModelHolder(versions[arm.version]), records([e for e in data.events if e["user_id"] == user]), {})
        assert alone.updates[user].recommendation.arm is None
        if rec.source == "personal":
            personal += 1
            assert list(alone.updates[user].recommendation.item_ids) == list(rec.item_ids)
    assert personal > len(result.updates) / 2


def test_online_trials_count_by_arm_only_for_recommendations_of_that_arm(data, versions):
    experiment = new_experiment("dims", [Arm("control", "v-a", 0.5), Arm("treatment", "v-b", 0.5)], NOW)
    holder = ModelHolder(versions["v-a"])
    store: dict[str, bytes] = {}
    first = run(holder, records(data.events), store)  # before the experiment: everyone on v-a
    assert first.arm_trials == {}
    holder.start_experiment(experiment, versions)
    # Each user now consumes the first item of the recommendation they hold (a hit).
    follow = [{**data.events[0], "user_id": u, "item_id": up.recommendation.item_ids[0], "event_type": "click",
               "timestamp_ms": NOW + 1000} for u, up in first.updates.items() if up.recommendation.item_ids]
    second = run(holder, records(follow, start=10_000), store)
    # Held recommendations came from v-a: they count for the control arm's users only.
    control_users = [e["user_id"] for e in follow if experiment.arm_of(e["user_id"]).name == "control"]
    assert second.arm_trials == {"control": len(control_users)} == second.arm_hits
    assert second.online_trials == len(follow)
    # Now every user holds their own arm's recommendation: hits and misses by arm.
    third_events = [{**e, "item_id": second.updates[e["user_id"]].recommendation.item_ids[0]
                     if experiment.arm_of(e["user_id"]).name == "treatment" else data.items[0]["item_id"],
                     "timestamp_ms": NOW + 2000} for e in follow]
    third = run(holder, records(third_events, start=20_000), store)
    treated = len(follow) - len(control_users)
    assert third.arm_trials == {"control": len(control_users), "treatment": treated}
    assert third.arm_hits.get("treatment") == treated
    assert third.arm_hits.get("control", 0) < len(control_users)


def test_stopping_serves_the_default_again_and_arms_must_be_loaded(data, versions):
    experiment = new_experiment("dims", [Arm("control", "v-a", 0.5), Arm("treatment", "v-b", 0.5)], NOW)
    holder = ModelHolder(versions["v-a"])
    with pytest.raises(KeyError):
        holder.start_experiment(experiment, {"v-a": versions["v-a"]})
    with pytest.raises(ValueError):
        holder.start_experiment(experiment, {"v-a": versions["v-a"], "v-b": versions["v-a"]})
    holder.start_experiment(experiment, versions)
    assert holder.experiment is experiment
    assert holder.stop_experiment() is experiment and holder.experiment is None
    result = run(holder, records(data.events[:30]), {})
    assert {up.recommendation.arm for up in result.updates.values()} == {None}
    assert {up.recommendation.model_version for up in result.updates.values()} == {"v-a"}
    # A swap of the default during an experiment keeps the arms.
    holder.start_experiment(experiment, versions)
    holder.swap(versions["v-b"])
    assert holder.serving.experiment is experiment and holder.current is versions["v-b"]


# --- a simulated experiment ------------------------------------------------------------
def _trained_before(dataset, cut_ms: int):
    """A two-tower version trained on the events before ``cut_ms`` only (the experiment runs after)."""
    import numpy as np
    import torch

    from models.data.dataset import IdMap, Interactions, ItemCatalog, leave_last_out
    from models.feedback import event_weight, is_positive
    from models.train.config import TrainConfig
    from models.train.loop import train_two_tower

    torch.manual_seed(0)
    users = IdMap(tuple(dataset.user_ids))
    items = IdMap(tuple(it["item_id"] for it in dataset.items))
    rows = [e for e in dataset.events if is_positive(e["event_type"]) and e["timestamp_ms"] < cut_ms]
    inter = Interactions(user=users.indices([e["user_id"] for e in rows]).astype(np.int64),
                         item=items.indices([e["item_id"] for e in rows]).astype(np.int64),
                         timestamp=np.asarray([e["timestamp_ms"] for e in rows], dtype=np.int64),
                         weight=np.asarray([event_weight(e["event_type"], e["value"]) for e in rows],
                                           dtype=np.float32), users=users, items=items)
    catalog = ItemCatalog(items=items, title=[it["title"] for it in dataset.items],
                          text=[it["text"] for it in dataset.items], tags=[list(it["tags"]) for it in dataset.items])
    return train_two_tower(leave_last_out(inter, catalog, name="before-cut"),
                           TrainConfig(tower="mean", dim=32, epochs=6, content="none", progress=False))


def _serving_version(trained, tmp_path, version: str, shuffle: bool = False):
    """``trained`` saved as an artifact and loaded as the worker loads it; ``shuffle``: its item
    vectors permuted, a broken version whose recommendations are unrelated to the user."""
    import numpy as np

    from index import IndexConfig, build_index
    from models.artifacts import save_artifact
    from stream.serving.model import model_from_artifact

    save_artifact(trained, tmp_path, version=version)
    model = model_from_artifact(tmp_path, version, index_config=IndexConfig(kind="flat"))
    if shuffle:
        model.vectors = np.ascontiguousarray(np.random.default_rng(1).permutation(model.vectors), dtype=np.float32)
        model._store = model.vectors
        model.index = build_index(model.vectors, np.arange(len(model.item_ids), dtype=np.int64), IndexConfig(kind="flat"))
    return model


def _simulate(dataset, default, experiment, versions, cut_ms: int) -> dict:
    """Replay the events in time order, 50 a batch: before ``cut_ms`` with ``default`` alone, then
    with ``experiment`` running; the per-arm results over the events after the cut."""
    from stream.core.experiments import compare

    holder = ModelHolder(default)
    processor = BatchProcessor(holder, TrendingCounter(), top_k=10)
    store: dict[str, bytes] = {}
    events = sorted(dataset.events, key=lambda e: e["timestamp_ms"])
    before = [e for e in events if e["timestamp_ms"] < cut_ms]
    after = [e for e in events if e["timestamp_ms"] >= cut_ms]
    now_ms = events[-1]["timestamp_ms"] + 3_600_000
    totals: dict[str, tuple[int, int]] = {}
    for phase, batch_events in (("before", before), ("after", after)):
        if phase == "after":
            holder.start_experiment(experiment, versions)
        for start in range(0, len(batch_events), 50):
            batch = records(batch_events[start:start + 50], start=start if phase == "before" else 10**6 + start)
            result = processor.process(batch, lambda u, r: UserState.from_bytes(store.get(u)), now_ms=now_ms)
            assert not result.dead_letters
            for user, update in result.updates.items():
                store[user] = update.state.to_bytes()
            for arm, trials in result.arm_trials.items():
                t, h = totals.get(arm, (0, 0))
                totals[arm] = (t + trials, h + result.arm_hits.get(arm, 0))
    return compare(experiment, totals)


def test_a_clearly_better_version_wins_a_simulated_experiment_and_a_copy_does_not(tmp_path):
    dataset = generate_demo_dataset(n_users=400, n_items=150, events_per_user=30, seed=21)
    stamps = sorted(e["timestamp_ms"] for e in dataset.events)
    cut = stamps[int(0.6 * len(stamps))]
    trained = _trained_before(dataset, cut)
    good = _serving_version(trained, tmp_path, "v-good")
    copy = _serving_version(trained, tmp_path, "v-good-copy")
    broken = _serving_version(trained, tmp_path, "v-broken", shuffle=True)

    ab = new_experiment("better", [Arm("control", "v-broken", 0.5), Arm("treatment", "v-good", 0.5)], NOW)
    result = _simulate(dataset, broken, ab, {"v-broken": broken, "v-good": good}, cut)
    control, treatment = result["arms"]
    assert control["trials"] > 1000 and treatment["trials"] > 1000
    assert treatment["hit_rate"] > control["hit_rate"] and treatment["significant"], result

    aa = new_experiment("copy", [Arm("control", "v-good", 0.5), Arm("treatment", "v-good-copy", 0.5)], NOW)
    result = _simulate(dataset, good, aa, {"v-good": good, "v-good-copy": copy}, cut)
    control, treatment = result["arms"]
    assert control["trials"] > 1000 and treatment["trials"] > 1000
    assert not treatment["significant"], result
