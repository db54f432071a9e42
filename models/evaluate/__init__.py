"""Offline evaluation: full-ranking metrics, the model registry, reports, the session protocol, streaming replay."""

from models.evaluate.ranking import DEFAULT_KS, EvaluationError, evaluate
from models.evaluate.registry import available_models, make_model, register_model
from models.evaluate.report import format_table, load_split, plot_report, run_report
from models.evaluate.session import (
    SessionSplit, evaluate_sessions, format_session_table, run_session_report, session_split,
)

__all__ = [
    "DEFAULT_KS", "EvaluationError", "SessionSplit", "available_models", "evaluate", "evaluate_sessions",
    "format_session_table", "format_table", "load_split", "make_model", "plot_report", "register_model",
    "run_report", "run_session_report", "session_split",
]
