"""The architecture of a two-tower model: which user tower, its sizes, its dropout.

Plain data, no torch: the trainer's settings (:class:`models.train.config.TrainConfig`)
extend it, the command line reads its fields, and a loaded artifact reports it,
so none of them needs the towers' code to know what a model looks like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# The one list of user towers: TrainConfig's choices, the CLI's, the evaluation
# registry's ``two_tower_<tower>`` names and ``USER_TOWERS``' keys all come from it.
Tower = Literal["mean", "gru", "cnn", "sasrec"]
TOWERS: tuple[str, ...] = get_args(Tower)


@dataclass(frozen=True)
class TowerConfig:
    """Architecture settings of :class:`models.towers.TwoTower`; every field has a default
    and its meaning in ``metadata["help"]`` (the command lines' help).

    Raises ``ValueError`` naming every invalid field.
    """

    tower: Tower = field(default="sasrec", metadata={"help": "User tower over the recent history."})
    dim: int = field(default=64, metadata={"help": "Vector size of both towers."})
    max_len: int = field(default=50, metadata={"help": "Most recent history items the user tower reads."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout inside the user tower."})
    id_dropout: float = field(default=0.1, metadata={
        "help": "Share of item ids dropped in training, so content alone also places an item (0 without content)."})
    id_backoff: float = field(default=0.0, metadata={
        "help": "With content: an item's id vector is scaled by n / (n + id_backoff), n its training count, "
                "so rare items lean on their content (0: off)."})
    n_layers: int = field(default=2, metadata={"help": "Layers of the gru and sasrec towers."})
    n_heads: int = field(default=1, metadata={"help": "Attention heads of the sasrec tower."})
    kernel_size: int = field(default=3, metadata={"help": "Convolution width of the cnn tower."})

    def __post_init__(self) -> None:
        bad = [k for k, ok in self._checks().items() if not ok]
        if bad:
            fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ValueError(f"invalid {type(self).__name__} fields: {fields}")

    def _checks(self) -> dict[str, bool]:
        """Field name -> valid; subclasses add theirs."""
        return {
            "tower": self.tower in TOWERS,
            "dim": self.dim >= 1,
            "max_len": self.max_len >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "id_dropout": 0.0 <= self.id_dropout < 1.0,
            "id_backoff": self.id_backoff >= 0.0,
            "n_layers": self.n_layers >= 1,
            "n_heads": self.n_heads >= 1,
            "kernel_size": self.kernel_size >= 1,
        }

    def tower_config(self) -> TowerConfig:
        """Only the architecture fields (of a subclass such as ``TrainConfig``, too)."""
        return TowerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TowerConfig)})

    def tower_spec(self, n_items: int, n_features: int) -> dict[str, Any]:
        """The JSON-able dict :class:`models.towers.TwoTower` is built from (saved in artifacts)."""
        return {
            "tower": self.tower, "n_items": n_items, "n_features": n_features, "dim": self.dim,
            "max_len": self.max_len, "dropout": self.dropout,
            # Without content, dropping the id would leave an item with no vector at all.
            "id_dropout": self.id_dropout if n_features else 0.0,
            "id_backoff": self.id_backoff if n_features else 0.0,
            "n_layers": self.n_layers, "n_heads": self.n_heads, "kernel_size": self.kernel_size,
        }

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> TowerConfig:
        """The architecture a :meth:`tower_spec` describes (sizes of the catalogue left out)."""
        names = {f.name for f in dataclasses.fields(TowerConfig)}
        return TowerConfig(**{k: v for k, v in spec.items() if k in names})
