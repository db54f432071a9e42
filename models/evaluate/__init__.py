"""Offline evaluation: full-ranking metrics, the model registry, reports, streaming replay."""

from models.evaluate.ranking import DEFAULT_KS, EvaluationError, evaluate
from models.evaluate.registry import available_models, make_model, register_model
from models.evaluate.report import format_table, load_split, plot_report, run_report

__all__ = [
    "DEFAULT_KS", "EvaluationError", "available_models", "evaluate", "format_table", "load_split",
    "make_model", "plot_report", "register_model", "run_report",
]
