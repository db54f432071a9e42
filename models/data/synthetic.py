"""A generated data set with known structure, shipped as code (no download).

Users have latent tastes over a handful of topics; items belong to a topic,
carry text metadata made from that topic's vocabulary, and have a catalogue
record. Each user's events follow their taste, drift within a session (the
next item tends to share the current item's topic, which sequential models can
learn) and come with event types that match how much the user liked the item:
long plays, likes and purchases for good matches, skips for poor ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.feedback import EventType

TOPICS: dict[str, tuple[str, ...]] = {
    "rock": ("guitar", "riff", "amplified", "anthem", "drums", "stadium", "garage", "loud"),
    "jazz": ("saxophone", "swing", "improvised", "trio", "bebop", "smoky", "brass", "blue"),
    "classical": ("symphony", "violin", "sonata", "orchestra", "baroque", "piano", "opus", "concerto"),
    "electronic": ("synth", "techno", "beat", "house", "bass", "club", "pulse", "analog"),
    "hiphop": ("rap", "rhymes", "boombap", "verse", "street", "sample", "flow", "cypher"),
    "folk": ("acoustic", "ballad", "banjo", "harmony", "campfire", "fiddle", "storyteller", "roots"),
    "scifi": ("starship", "galaxy", "robot", "future", "alien", "warp", "cyber", "orbit"),
    "crime": ("detective", "heist", "noir", "murder", "alibi", "gangster", "clue", "suspect"),
    "cooking": ("recipe", "kitchen", "spice", "baking", "chef", "pasta", "grill", "flavour"),
    "fitness": ("workout", "running", "yoga", "strength", "cardio", "stretch", "training", "sweat"),
    "travel": ("journey", "island", "mountain", "passport", "road", "city", "beach", "explorer"),
    "gaming": ("console", "quest", "level", "arcade", "multiplayer", "controller", "boss", "pixel"),
}
COMMON_WORDS = ("new", "best", "classic", "live", "deluxe", "edition", "vol", "collection", "original", "special")
KINDS = ("track", "episode", "product")


@dataclass(frozen=True)
class DemoDataset:
    """A generated catalogue and event log.

    ``items``: one dict per item (``item_id`` str, ``title``, ``text``, ``tags``
    list of str, ``category`` (its topic), ``kind``, ``price`` float,
    ``duration_s`` float, ``created_ms`` int).
    ``events``: one dict per event in time order (``user_id``, ``item_id``,
    ``event_type``, ``timestamp_ms``, ``value`` float or None).
    ``user_topics``: shape (n_users, n_topics) float64, each user's taste
    (rows sum to 1); ``item_topics``: shape (n_items,) int64, each item's topic.
    """

    items: list[dict]
    events: list[dict]
    user_topics: np.ndarray
    item_topics: np.ndarray
    topics: tuple[str, ...] = field(default=tuple(TOPICS))

    @property
    def user_ids(self) -> list[str]:
        return [user_id(u) for u in range(self.user_topics.shape[0])]


def user_id(index: int) -> str:
    """The external id of generated user number ``index``."""
    return f"u{index:05d}"


def item_id(index: int) -> str:
    """The external id of generated item number ``index``."""
    return f"i{index:05d}"


def generate_demo_dataset(
    n_users: int = 1_000,
    n_items: int = 500,
    events_per_user: int = 40,
    start_ms: int = 1_767_225_600_000,  # 2026-01-01T00:00:00Z
    span_days: float = 28.0,
    seed: int = 7,
) -> DemoDataset:
    """Generate users, a catalogue and a time-ordered event log, deterministically from ``seed``."""
    if n_users < 1 or n_items < len(TOPICS) or events_per_user < 1:
        raise ValueError(
            f"need n_users >= 1, n_items >= {len(TOPICS)}, events_per_user >= 1; "
            f"got {n_users}, {n_items}, {events_per_user}"
        )
    rng = np.random.default_rng(seed)
    topics = tuple(TOPICS)
    n_topics = len(topics)

    item_topics = np.arange(n_items) % n_topics
    rng.shuffle(item_topics)
    # Popularity follows a power law, as in every real catalogue.
    popularity = rng.pareto(1.2, n_items) + 1.0
    items = [_make_item(i, topics[item_topics[i]], rng, start_ms) for i in range(n_items)]

    # Each user likes two or three topics a lot and the rest a little.
    user_topics = rng.dirichlet(np.full(n_topics, 0.15), size=n_users)
    by_topic = [np.flatnonzero(item_topics == t) for t in range(n_topics)]
    by_topic_p = [popularity[ix] / popularity[ix].sum() for ix in by_topic]

    span_ms = int(span_days * 86_400_000)
    events: list[dict] = []
    for u in range(n_users):
        n_events = max(3, int(rng.poisson(events_per_user)))
        times = np.sort(rng.integers(start_ms, start_ms + span_ms, n_events))
        topic = rng.choice(n_topics, p=user_topics[u])
        seen: set[int] = set()
        for t in times:
            # Session drift: mostly stay on the current topic, sometimes switch by taste.
            if rng.random() < 0.3:
                topic = rng.choice(n_topics, p=user_topics[u])
            candidates, p = by_topic[topic], by_topic_p[topic]
            item = int(rng.choice(candidates, p=p))
            for _ in range(3):  # prefer items not consumed yet
                if item not in seen:
                    break
                item = int(rng.choice(candidates, p=p))
            seen.add(item)
            affinity = user_topics[u, item_topics[item]]
            etype, value = _event_kind(items[item], affinity, rng)
            events.append(
                {
                    "user_id": user_id(u),
                    "item_id": items[item]["item_id"],
                    "event_type": etype.value,
                    "timestamp_ms": int(t),
                    "value": value,
                }
            )
    events.sort(key=lambda e: (e["timestamp_ms"], e["user_id"]))
    return DemoDataset(items=items, events=events, user_topics=user_topics, item_topics=item_topics.astype(np.int64))


def _make_item(i: int, topic: str, rng: np.random.Generator, start_ms: int) -> dict:
    words = TOPICS[topic]
    title_words = rng.choice(words, size=2, replace=False).tolist()
    title = " ".join([str(rng.choice(COMMON_WORDS)).title(), *(w.title() for w in title_words)])
    body = rng.choice(words, size=6).tolist() + rng.choice(COMMON_WORDS, size=2).tolist()
    kind = KINDS[i % len(KINDS)]
    return {
        "item_id": item_id(i),
        "title": title,
        "text": f"A {topic} {kind}: " + " ".join(body) + ".",
        "tags": sorted({topic, *rng.choice(words, size=2, replace=False).tolist()}),
        "category": topic,
        "kind": kind,
        "price": round(float(rng.uniform(1, 60)), 2) if kind == "product" else 0.0,
        "duration_s": round(float(rng.uniform(120, 420)), 1) if kind != "product" else 0.0,
        "created_ms": int(start_ms - rng.integers(0, 365 * 86_400_000)),
    }


def _event_kind(item: dict, affinity: float, rng: np.random.Generator) -> tuple[EventType, float | None]:
    """Pick an event type and value from how well the item matches the user's taste."""
    liked = rng.random() < 0.35 + 0.6 * affinity
    if item["kind"] == "product":
        if liked and rng.random() < 0.25:
            return EventType.PURCHASE, item["price"]
        return EventType.CLICK, None
    if not liked:
        return EventType.SKIP, round(float(rng.uniform(1, 15)), 1)
    if rng.random() < 0.1:
        return EventType.LIKE, None
    return EventType.PLAY, round(float(item["duration_s"] * rng.uniform(0.5, 1.0)), 1)
