"""Towers: the item tower (id + content) and the user towers over recent history.

Token convention shared by every tower: a history or item batch holds
``item index + 1`` (the index in the item :class:`IdMap`), and token ``0`` is
padding. Use :func:`to_tokens` to convert.
"""

from models.towers.item import ItemTower, to_tokens
from models.towers.model import TwoTower, left_pad
from models.towers.user import (
    USER_TOWERS,
    CNNUserTower,
    GRUUserTower,
    MeanUserTower,
    SASRecUserTower,
    UserTower,
    make_user_tower,
)

__all__ = [
    "USER_TOWERS",
    "CNNUserTower",
    "GRUUserTower",
    "ItemTower",
    "MeanUserTower",
    "SASRecUserTower",
    "TwoTower",
    "UserTower",
    "left_pad",
    "make_user_tower",
    "to_tokens",
]
