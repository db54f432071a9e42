"""Non-neural baselines: popularity, item/user kNN, content-based, matrix factorisation."""

from models.baselines.content import ContentBased
from models.baselines.knn import ItemKNN, UserKNN
from models.baselines.mf import ImplicitALS, ImplicitBPR
from models.baselines.popular import MostPopular

__all__ = ["ContentBased", "ImplicitALS", "ImplicitBPR", "ItemKNN", "MostPopular", "UserKNN"]
