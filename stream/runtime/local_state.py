"""Whether the worker's local RocksDB tables can be trusted after the previous run.

Under ``exactly_once`` a table write reaches RocksDB at once but its changelog
record only counts when the Kafka transaction commits. A worker that dies
between the two leaves state in RocksDB that the committed changelog does not
have; the redelivered events then look already applied and would be lost.
Kafka Streams solves this with a checkpoint written on clean shutdown; this is
the same idea: a marker file lives in the table folder while a worker runs and
is removed when it stops cleanly. Finding it at start means the last run did
not stop cleanly, and under ``exactly_once`` the local tables are deleted, so
Faust restores them from the committed changelog. Under ``at_least_once`` the
changelog is allowed to lag the database, and redelivered events rewrite it
(see ``stream.serving.processor``), so local state is kept.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".worker-running"


def claim(tabledir: Path, wipe_if_unclean: bool) -> bool:
    """Mark ``tabledir`` as in use; returns whether the previous run stopped uncleanly.

    With ``wipe_if_unclean``, the tables of an unclean run are deleted first.
    """
    tabledir.mkdir(parents=True, exist_ok=True)
    marker = tabledir / MARKER
    if marker.exists() and marker.read_text().strip() == str(os.getpid()):
        return False  # claimed already by this process (Faust sends its worker-init signal twice)
    unclean = marker.exists()
    if unclean and wipe_if_unclean:
        removed = 0
        for child in tabledir.iterdir():
            if child.name == MARKER:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
            removed += 1
        log.warning("previous worker run stopped uncleanly (marker %s, pid %s): deleted %d local table "
                    "folder(s); they are restored from the committed changelog", marker,
                    marker.read_text().strip() or "?", removed)
    elif unclean:
        log.info("previous worker run stopped uncleanly; keeping local tables (at_least_once)")
    marker.write_text(str(os.getpid()))
    return unclean


def release(tabledir: Path) -> None:
    """Record a clean stop: the tables in ``tabledir`` match what was committed."""
    (tabledir / MARKER).unlink(missing_ok=True)
