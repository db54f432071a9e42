"""Vectors of this worker's users, searchable for "similar users" (friend suggestions).

Built with the same ``index`` code as the item index, over other ids: each
user id gets an int64 id in first-seen order. A worker holds the users of the
partitions it owns; ``GET /users/{id}/similar`` asks every worker's index for
its nearest users and merges them (``stream.runtime.worker.Worker.similar_users``). Upserts are
kept aside and added to the index in one call when the next query comes: the
worker upserts every batch, and an index update per batch cost more than the
queries it serves.
"""

from __future__ import annotations

import numpy as np

from index import IndexConfig, build_index


class UserVectors:
    """Upsert user vectors; find the users nearest to a vector."""

    def __init__(self, config: IndexConfig | None = None) -> None:
        """``config`` (default ``IndexConfig()``) builds the index; the worker passes the settings' one."""
        self._config = config or IndexConfig()
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._index = None
        self._dim: int | None = None
        self._pending: dict[int, np.ndarray] = {}  # id -> newest vector not yet in the index
        # id -> events-topic partition the user was last seen on (-1: none given, -2: forgotten);
        # an array that grows by doubling: a dict of a million ints took ~100 MB.
        self._partition = np.full(1024, -1, dtype=np.int32)

    def __len__(self) -> int:
        self._flush()
        return len(self._index) if self._index is not None else 0

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._ids

    def upsert(self, user_ids: list[str], vectors: np.ndarray, partitions: list[int] | None = None) -> None:
        """Add or replace the vectors of ``user_ids`` (float32 (n, d)), each user of the events-topic
        partition at the same place of ``partitions`` (see :meth:`keep_partitions`); a new
        dimension starts afresh."""
        if not user_ids:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._dim != vectors.shape[1]:
            self._ids, self._names, self._index, self._dim = {}, [], None, vectors.shape[1]
            self._pending, self._partition = {}, np.full(1024, -1, dtype=np.int32)
        uids = []
        for row, user in enumerate(user_ids):
            if user not in self._ids:
                self._ids[user] = len(self._names)
                self._names.append(user)
            uid = self._ids[user]
            self._pending[uid] = vectors[row]
            uids.append(uid)
        if len(self._names) > self._partition.size:
            grown = np.full(max(2 * self._partition.size, len(self._names)), -1, dtype=np.int32)
            grown[:self._partition.size] = self._partition
            self._partition = grown
        if partitions is not None:
            self._partition[np.asarray(uids, dtype=np.int64)] = np.asarray(partitions, dtype=np.int32)

    def upsert_missing(self, user_ids: list[str], vectors: np.ndarray, partition: int) -> int:
        """:meth:`upsert` the users of ``user_ids`` this index does not hold (read back from a table:
        a user held already got a fresher vector from an event meanwhile); returns how many."""
        if self._dim is not None and vectors.shape[1] != self._dim:
            return 0  # another version's vectors: not comparable with the index's
        rows = [r for r, u in enumerate(user_ids) if u not in self._ids]
        if rows:
            self.upsert([user_ids[r] for r in rows], vectors[rows], [partition] * len(rows))
        return len(rows)

    def keep_partitions(self, partitions: set[int]) -> int:
        """Forget the users of every other partition (the worker gave them up: their owner answers
        for them now); returns how many were forgotten."""
        seen = self._partition[:len(self._names)]
        gone = np.flatnonzero((seen >= 0) & ~np.isin(seen, np.fromiter(partitions, dtype=np.int32)))
        return self._forget(gone)

    def remove(self, user_ids: list[str]) -> int:
        """Forget ``user_ids`` (their vector now lives in another version's index); returns how many were held."""
        gone = np.fromiter((self._ids[u] for u in user_ids if u in self._ids), dtype=np.int64)
        return self._forget(gone)

    def _forget(self, gone: np.ndarray) -> int:
        if not gone.size:
            return 0
        self._partition[gone] = -2
        for uid in gone.tolist():
            self._pending.pop(uid, None)
            del self._ids[self._names[uid]]
        if self._index is not None:
            self._index.remove(gone.astype(np.int64))
        return len(gone)

    def _flush(self) -> None:
        if not self._pending:
            return
        ids = np.fromiter(self._pending.keys(), dtype=np.int64, count=len(self._pending))
        vectors = np.stack(list(self._pending.values()))
        self._pending = {}
        if self._index is None:
            self._index = build_index(vectors, ids, self._config)
        else:
            self._index.add(vectors, ids)

    def similar(self, user_id: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` users nearest to ``vector``, ``user_id`` itself left out."""
        return self.nearest(vector, k, (user_id,))

    def nearest(self, vector: np.ndarray, k: int, exclude: tuple[str, ...] | list[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` users of this index nearest to ``vector``, best first, ``exclude`` left out (a
        vector of another dimension than the index's finds nobody)."""
        self._flush()
        if self._index is None or self._dim != vector.shape[0]:
            return []
        left_out = {self._ids[u] for u in exclude if u in self._ids}
        names, known = self._names, self._ids
        scores, ids = self._index.search(vector[None, :].astype(np.float32), k, exclude=[left_out])
        return [(names[int(i)], float(s)) for s, i in zip(scores[0], ids[0])
                if i >= 0 and known.get(names[int(i)]) == int(i)]


class UsersByVersion:
    """One :class:`UserVectors` per model version: a user's vector lives in the index of the version
    that computed it, and neighbours are searched among users of the same version only. Vectors of
    two versions (an experiment's arms, or the versions before and after a swap) are in different
    spaces, even at one dimension: comparing them would rank users by noise. A version's index
    empties as its users are re-embedded by another, and is dropped then."""

    def __init__(self, config: IndexConfig | None = None) -> None:
        self._config = config or IndexConfig()
        self._by_version: dict[str, UserVectors] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_version.values())

    def versions(self) -> dict[str, int]:
        """Users held per version."""
        return {version: len(users) for version, users in self._by_version.items()}

    def _of(self, version: str) -> UserVectors:
        found = self._by_version.get(version)
        if found is None:
            found = self._by_version[version] = UserVectors(self._config)
        return found

    def upsert(self, version: str, user_ids: list[str], vectors: np.ndarray, partitions: list[int] | None = None) -> None:
        """Add or replace the vectors ``version`` computed for ``user_ids``; they leave any other version's index."""
        if not user_ids:
            return
        for other, users in list(self._by_version.items()):
            if other != version and users.remove(user_ids) and not len(users):
                del self._by_version[other]
        self._of(version).upsert(user_ids, vectors, partitions)

    def upsert_missing(self, version: str, user_ids: list[str], vectors: np.ndarray, partition: int) -> int:
        """:meth:`UserVectors.upsert_missing` into ``version``'s index, skipping users any version holds."""
        keep = [r for r, u in enumerate(user_ids) if not any(u in v for v in self._by_version.values())]
        if len(keep) < len(user_ids):
            user_ids, vectors = [user_ids[r] for r in keep], vectors[keep]
        return self._of(version).upsert_missing(user_ids, vectors, partition) if user_ids else 0

    def keep_partitions(self, partitions: set[int]) -> int:
        return sum(users.keep_partitions(partitions) for users in self._by_version.values())

    def nearest(self, version: str, vector: np.ndarray, k: int, exclude: tuple[str, ...] | list[str] = ()
                ) -> list[tuple[str, float]]:
        """The ``k`` users whose ``version`` vectors are nearest to ``vector`` (none for an unknown version)."""
        users = self._by_version.get(version)
        return users.nearest(vector, k, exclude) if users is not None else []
