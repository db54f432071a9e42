"""Decoded user states kept between batches, so a hot user is not decoded and checked again each batch.

The stored bytes stay the truth: an entry is used only when the bytes it was
made from are exactly the bytes the table holds now (recovery, a standby or any
other writer changing them makes the entry miss). :meth:`StateCache.take`
removes the entry it returns, because the batch then changes that object in
place; :meth:`StateCache.keep` puts it back with the bytes written for it. A
batch that fails half way therefore leaves nothing stale behind: what it took is
simply gone, and the next batch decodes from the table.
"""

from __future__ import annotations

from collections import OrderedDict

from stream.core.state import UserState


class StateCache:
    """At most ``max_bytes`` of encoded state (the sum of the stored values' lengths), least recently kept out first."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[bytes, UserState]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def take(self, key: bytes, stored: bytes | None) -> UserState | None:
        """The state decoded from ``stored`` if an entry was made from exactly those bytes, removed from the cache."""
        entry = self._entries.pop(key, None)
        if entry is None:
            self.misses += stored is not None
            return None
        self._bytes -= len(entry[0])
        if stored is None or entry[0] != stored:
            self.misses += stored is not None
            return None
        self.hits += 1
        return entry[1]

    def keep(self, key: bytes, stored: bytes, state: UserState) -> None:
        """Remember that ``stored`` (the bytes just written for ``key``) decodes to ``state``."""
        if len(stored) > self.max_bytes:
            self.discard(key)
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._entries[key] = (stored, state)
        self._bytes += len(stored)
        while self._bytes > self.max_bytes:
            _, (raw, _) = self._entries.popitem(last=False)
            self._bytes -= len(raw)

    def discard(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])

    def clear(self) -> None:
        """Forget everything (partitions revoked or reassigned)."""
        self._entries.clear()
        self._bytes = 0
