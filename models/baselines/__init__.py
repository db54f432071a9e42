"""Non-neural baselines: popularity, item/user kNN, content-based, matrix factorisation, session kNN and rules."""

from models.baselines.content import ContentBased
from models.baselines.knn import ItemKNN, UserKNN
from models.baselines.mf import ImplicitALS, ImplicitBPR
from models.baselines.popular import MostPopular
from models.baselines.session import VSKNN, AssociationRules, SequentialRules, SessionKNN

__all__ = [
    "VSKNN", "AssociationRules", "ContentBased", "ImplicitALS", "ImplicitBPR", "ItemKNN", "MostPopular",
    "SequentialRules", "SessionKNN", "UserKNN",
]
