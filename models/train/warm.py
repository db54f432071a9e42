"""Warm starts: begin training from a previous version's weights instead of from scratch."""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from models.data.dataset import IdMap
from models.towers.model import TwoTower

log = logging.getLogger(__name__)


def warm_start_from(previous: TwoTower, previous_items: IdMap, items: IdMap) -> Callable[[TwoTower], dict[str, Any]]:
    """An ``init`` for :func:`models.train.train_two_tower` that copies ``previous``'s weights.

    Item id embeddings are matched by external item id (a new item keeps its
    fresh random row, an item that left the catalogue is dropped); every other
    weight is copied when its shape is the same. Content weights are never
    copied: the new version fits a new text vocabulary. Returns counts of what
    was copied, for the log.
    """
    old_row = {item: i for i, item in enumerate(previous_items.ids)}
    pairs = [(new + 1, old_row[item] + 1) for new, item in enumerate(items.ids) if item in old_row]

    def init(model: TwoTower) -> dict[str, Any]:
        old_state = previous.state_dict()
        state = model.state_dict()
        copied, skipped = [], []
        with torch.no_grad():
            for name, tensor in state.items():
                old = old_state.get(name)
                if old is None or "content" in name:
                    skipped.append(name)
                elif name.endswith("id_embedding.weight"):
                    if pairs:  # rows are tokens: item index + 1, row 0 is padding
                        new_rows, old_rows = map(list, zip(*pairs))
                        tensor[new_rows] = old[old_rows].to(tensor.dtype)
                    copied.append(name)
                elif old.shape == tensor.shape:
                    tensor.copy_(old)
                    copied.append(name)
                else:
                    skipped.append(name)
        model.load_state_dict(state)
        report = {"copied": len(copied), "skipped": len(skipped), "items_kept": len(pairs), "items": len(items)}
        log.info("warm_start copied=%d skipped=%d items_kept=%d items=%d", *report.values())
        return report

    return init
