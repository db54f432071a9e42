"""The worker freezes its long-lived heap after a model loads, collecting what was let go first."""

import gc
import weakref

from stream.runtime.worker import freeze_heap


class Node:
    pass


def test_freeze_heap_collects_released_cycles_then_freezes_the_rest():
    released, kept = Node(), Node()
    released.self, kept.self = released, kept  # cycles: only the collector frees them
    gone = weakref.ref(released)
    del released
    try:
        freeze_heap()
        assert gone() is None
        assert gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        freeze_heap()  # a later swap thaws first, so the count does not pile up
        assert abs(gc.get_freeze_count() - frozen) < frozen // 10
    finally:
        gc.unfreeze()
    assert kept.self is kept
