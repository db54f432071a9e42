"""Model names -> factories, so one report can train any mix of models by name.

Other packages register their own models, e.g. in ``models/towers``::

    from models.evaluate.registry import register_model
    register_model("two_tower", lambda **kw: TwoTowerRecommender(**kw))
"""

from __future__ import annotations

from typing import Any, Callable

from models.base import Recommender

Factory = Callable[..., Recommender]
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make ``make_model(name, **kwargs)`` call ``factory(**kwargs)``."""
    if not name or not isinstance(name, str):
        raise ValueError("model name must be a non-empty string")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = factory


def make_model(name: str, **kwargs: Any) -> Recommender:
    """A fresh, unfitted model registered as ``name``; raises ``KeyError`` listing the known names."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(available_models())}") from None
    return factory(**kwargs)


def available_models() -> list[str]:
    """Registered names, in registration order."""
    return list(_REGISTRY)


def _register_baselines() -> None:
    from models import baselines as b

    for name, cls in (("pop", b.MostPopular), ("itemknn", b.ItemKNN), ("userknn", b.UserKNN),
                      ("content", b.ContentBased), ("bpr", b.ImplicitBPR), ("als", b.ImplicitALS),
                      ("sknn", b.SessionKNN), ("vsknn", b.VSKNN), ("sr", b.SequentialRules),
                      ("ar", b.AssociationRules)):
        register_model(name, cls, overwrite=True)


_register_baselines()
