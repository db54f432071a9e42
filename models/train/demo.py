"""A leave-last-out split of the generated demo data, built without the loaders.

Used by tests and smoke runs; positives only (skips dropped), weights from
:func:`models.feedback.event_weight`.
"""

from __future__ import annotations

import numpy as np

from models.data.dataset import IdMap, Interactions, ItemCatalog, Split, leave_last_out
from models.data.synthetic import generate_demo_dataset
from models.feedback import event_weight, is_positive


def demo_split(n_users: int = 200, n_items: int = 100, events_per_user: int = 40, seed: int = 7) -> Split:
    """Generate the demo data set and cut it with :func:`leave_last_out`."""
    demo = generate_demo_dataset(n_users=n_users, n_items=n_items, events_per_user=events_per_user, seed=seed)
    users = IdMap(tuple(demo.user_ids))
    items = IdMap(tuple(it["item_id"] for it in demo.items))
    rows = [e for e in demo.events if is_positive(e["event_type"])]
    inter = Interactions(
        user=users.indices([e["user_id"] for e in rows]).astype(np.int64),
        item=items.indices([e["item_id"] for e in rows]).astype(np.int64),
        timestamp=np.asarray([e["timestamp_ms"] for e in rows], dtype=np.int64),
        weight=np.asarray([event_weight(e["event_type"], e["value"]) for e in rows], dtype=np.float32),
        users=users,
        items=items,
    )
    catalog = ItemCatalog(
        items=items,
        title=[it["title"] for it in demo.items],
        text=[it["text"] for it in demo.items],
        tags=[list(it["tags"]) for it in demo.items],
    )
    return leave_last_out(inter, catalog, name="demo")
