"""What the dashboard reads from the topics itself, outside any consumer group.

``recommendations`` (how often each item was recommended; each user's new record pushed to
the pages watching that user), ``events`` (how often each item was consumed, by type),
``dead-letter`` (the latest rejected records) and ``model-updates`` (every version and
experiment record). Each is read from the beginning the topic still holds, then followed
(:func:`stream.kafka.feeds.follow_topic`); counts are kept per item, never per user.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, deque
from typing import Any

import orjson

from stream.core.dead_letters import DeadLetter
from stream.core.events import parse_event
from stream.core.experiments import Experiment, parse_model_update
from stream.core.topics import DEAD_LETTER, EVENTS, MODEL_UPDATES, RECOMMENDATIONS
from stream.errors import InvalidRecord
from stream.kafka.feeds import follow_topic
from stream.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTERS_KEPT = 200
RECENT_USERS = 100
PAYLOAD_PREFIX_BYTES = 160  # of a dead letter's key and value, shown as text
SUBSCRIBER_QUEUE = 16  # records a slow page may fall behind by before it misses some


def payload_prefix(raw: bytes | None) -> str | None:
    """The start of a rejected key or value as text (undecodable bytes replaced); never the whole."""
    if raw is None:
        return None
    text = raw[:PAYLOAD_PREFIX_BYTES].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > PAYLOAD_PREFIX_BYTES else "")


class TopicViews:
    """The topics' state the pages show, kept up to date by :meth:`run`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recommended: Counter[str] = Counter()
        self.consumed: dict[str, Counter[str]] = {}
        self.recent_users: OrderedDict[str, int] = OrderedDict()  # user -> published_ms, newest last
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.updates: list[dict[str, Any]] = []
        self.caught_up: set[str] = set()
        self.read: Counter[str] = Counter()
        self._watchers: dict[str, set[asyncio.Queue]] = {}

    # --- live pages ----------------------------------------------------------------
    def watch(self, user_id: str) -> asyncio.Queue:
        """A queue that receives each new recommendation record of ``user_id`` (a dict)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._watchers.setdefault(user_id, set()).add(queue)
        return queue

    def unwatch(self, user_id: str, queue: asyncio.Queue) -> None:
        watchers = self._watchers.get(user_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[user_id]

    # --- handlers --------------------------------------------------------------------
    async def on_recommendations(self, records: list[Any]) -> None:
        self.read[RECOMMENDATIONS] += len(records)
        for record in records:
            try:
                data = orjson.loads(record.value)
                user = str(data["user_id"])
                items = [str(i["item_id"]) for i in data["items"]]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not the worker's record: the topic has no reader that refuses it
            self.recommended.update(items)
            self.recent_users[user] = int(data.get("published_ms") or record.timestamp_ms or 0)
            self.recent_users.move_to_end(user)
            while len(self.recent_users) > RECENT_USERS:
                self.recent_users.popitem(last=False)
            for queue in self._watchers.get(user, ()):
                if not queue.full():
                    queue.put_nowait(data)

    async def on_events(self, records: list[Any]) -> None:
        self.read[EVENTS] += len(records)
        for record in records:
            try:
                event = parse_event(record.value)
            except InvalidRecord:
                continue  # the workers dead-letter it
            self.consumed.setdefault(event.item_id, Counter())[event.event_type.value] += 1

    async def on_dead_letters(self, records: list[Any]) -> None:
        self.read[DEAD_LETTER] += len(records)
        for record in records:
            try:
                letter = DeadLetter.parse(record.value)
            except InvalidRecord:
                continue
            self.dead_letters.append({
                "reason": letter.reason, "detail": letter.detail[:300], "topic": letter.topic,
                "partition": letter.partition, "offset": letter.offset, "rejected_ms": letter.rejected_ms,
                "key": payload_prefix(letter.key), "key_size": letter.key_size,
                "value": payload_prefix(letter.value), "value_size": letter.value_size})

    async def on_model_updates(self, records: list[Any]) -> None:
        self.read[MODEL_UPDATES] += len(records)
        for record in records:
            try:
                update = parse_model_update(record.value)
            except InvalidRecord:
                continue
            if isinstance(update, Experiment):
                self.updates.append({"kind": "experiment", "name": update.name, "started_ms": update.started_ms,
                                     "stopped_ms": update.stopped_ms, "promoted": update.promoted,
                                     "arms": [{"arm": a.name, "version": a.version, "share": a.share}
                                              for a in update.arms]})
            else:
                self.updates.append({"kind": "version", **update.to_dict(), "offset": record.offset})

    # --- the feeds ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Follow the four topics until ``stop`` is set."""
        feeds = {RECOMMENDATIONS: self.on_recommendations, EVENTS: self.on_events,
                 DEAD_LETTER: self.on_dead_letters, MODEL_UPDATES: self.on_model_updates}

        def caught_up(name: str):
            async def mark() -> None:
                self.caught_up.add(name)
            return mark

        await asyncio.gather(*(follow_topic(self.settings, self.settings.topic(name), handler,
                                            on_caught_up=caught_up(name), stop=stop)
                               for name, handler in feeds.items()))

    def item_counts(self, item_id: str) -> dict[str, Any]:
        return {"recommended": self.recommended.get(item_id, 0),
                "consumed": dict(self.consumed.get(item_id, {})),
                "counted_since": "the oldest record each topic holds",
                "caught_up": RECOMMENDATIONS in self.caught_up and EVENTS in self.caught_up}
