"""Towers: the item tower (id + content) and the user towers over recent history.

Token convention shared by every tower: a history or item batch holds
``item index + 1`` (the index in the item :class:`IdMap`), and token ``0`` is
padding. Use :func:`to_tokens` to convert.

:mod:`models.towers.config` (the architecture, the list of towers) is plain data;
the modules with torch load on first use of one of their names, so reading the
configuration (the command line, ``streamrec settings``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.towers.config import TOWERS, Tower, TowerConfig

_LAZY = {
    "ItemTower": "models.towers.item",
    "to_tokens": "models.towers.item",
    "TwoTower": "models.towers.model",
    "left_pad": "models.towers.model",
    "LoadedModel": "models.towers.loaded",
    "USER_TOWERS": "models.towers.user",
    "CNNUserTower": "models.towers.user",
    "GRUUserTower": "models.towers.user",
    "MeanUserTower": "models.towers.user",
    "SASRecUserTower": "models.towers.user",
    "UserTower": "models.towers.user",
    "make_user_tower": "models.towers.user",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["TOWERS", "Tower", "TowerConfig", *_LAZY]
