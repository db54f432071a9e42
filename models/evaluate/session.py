"""The session protocol of session-based recommendation, as session-rec runs it (Ludewig & Jannach 2018).

Models are fitted on the benchmark's train file only (one user per training
session, cleaned like every other data set). Then, for every test session (in
time order) and every position t >= 1, the model scores all training items from
the clicks before t (``Recommender.score_histories``) and the click at t is the
target: full ranking, no sampled negatives, HR / MRR / NDCG averaged over
predictions (session-rec's ``evaluate_sessions`` with its ``HitRate`` and
``MRR`` metrics, cut-off 20).

Decisions, following session-rec:

* repeated consecutive clicks stay in the test sessions and are predicted like
  any other click (session-rec evaluates every row of its test file, and its
  preprocessing keeps them);
* items already in the session are *not* excluded from the ranking;
* test clicks on items absent from train are dropped before prefixes are built,
  then sessions left with fewer than 2 clicks; both are counted in the protocol
  block (session-rec's preprocessing does the same drop);
* ties are broken by the lower item index, so a constant scorer is deterministic.

Models whose ``scores_histories`` is False are reported as not applicable.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from models.base import Recommender
from models.data.dataset import Interactions, ItemCatalog
from models.data.loaders import FOLDERS, YOOCHOOSE_FILES, default_data_dir, load_yoochoose
from models.data.preprocess import preprocess
from models.errors import DataError
from models.evaluate.ranking import EvaluationError
from models.evaluate.registry import available_models, make_model

log = logging.getLogger(__name__)

SESSION_KS = (10, 20)
SESSION_TABLE_METRICS = ("hr@20", "mrr@20", "ndcg@20", "hr@10", "mrr@10", "ndcg@10")
# Scores of one batch stay under this many bytes (float32 rows of n_items).
BATCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SessionSplit:
    """Training sessions (as ``Interactions``) and the test sessions to predict click by click.

    ``sessions``: per test session, its clicks as training item indices
    (int64, chronological, at least 2), sessions ordered by their first click;
    ``session_ids``: their external ids, same order.
    """

    train: Interactions
    catalog: ItemCatalog
    sessions: tuple[np.ndarray, ...]
    session_ids: tuple[str, ...]
    name: str
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @property
    def n_predictions(self) -> int:
        return int(sum(len(s) - 1 for s in self.sessions))

    def prefixes(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Every prediction: (histories, targets, session index, position t).

        ``histories[j]`` is ``sessions[s][:t]`` (a view), ``targets[j]`` is
        ``sessions[s][t]``, for t = 1 .. len - 1, sessions in order.
        """
        histories = [s[:t] for s in self.sessions for t in range(1, len(s))]
        lengths = np.array([len(s) - 1 for s in self.sessions], dtype=np.int64)
        session = np.repeat(np.arange(len(self.sessions), dtype=np.int64), lengths)
        starts = np.cumsum(lengths) - lengths
        position = np.arange(len(session), dtype=np.int64) - np.repeat(starts, lengths) + 1
        targets = np.concatenate([s[1:] for s in self.sessions]) if self.sessions else np.zeros(0, np.int64)
        return histories, targets.astype(np.int64), session, position


def session_folder(name_or_path: str | Path, data_dir: str | Path | None = None) -> Path:
    """The folder of a named data set (``FOLDERS``) under ``data_dir``, or the path itself."""
    name = str(name_or_path)
    if name in FOLDERS:
        return (Path(data_dir) if data_dir is not None else default_data_dir()) / FOLDERS[name]
    return Path(name_or_path)


def has_session_split(name_or_path: str | Path, data_dir: str | Path | None = None) -> bool:
    """Whether the data set ships a benchmark train / test pair of files (today: the YOOCHOOSE format)."""
    folder = session_folder(name_or_path, data_dir)
    return all((folder / f).exists() for f in YOOCHOOSE_FILES.values())


def session_split(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    *,
    max_sessions: int | None = None,
    train_options: Mapping[str, Any] | None = None,
    consecutive_repeats: Literal["keep", "collapse"] = "keep",
) -> SessionSplit:
    """Read the benchmark's train and test files; clean train like other data; map test onto train's items.

    ``max_sessions``: keep only the first test sessions (in time order), for quick runs.
    ``consecutive_repeats``: "keep" (session-rec) or "collapse" a run of clicks on
    one item to its first, a variant some papers use (it changes the figures a lot:
    a quarter of yoochoose-100k's predictions are re-clicks of the item just clicked).
    ``train_options``: keyword options for ``preprocess`` on the train file
    (default: its defaults, repeated (session, item) pairs collapsed to the first).
    """
    folder = session_folder(name_or_path, data_dir)
    if not has_session_split(folder):
        raise DataError(f"{folder}: no benchmark train/test files ({', '.join(YOOCHOOSE_FILES.values())})")
    name = str(name_or_path) if str(name_or_path) in FOLDERS else folder.name
    train, catalog, train_report = preprocess(load_yoochoose(folder, "train"), **dict(train_options or {}))
    # Test keeps every click (repeats too): only invalid rows and exact duplicates go.
    test, _, test_report = preprocess(load_yoochoose(folder, "test"), repeats="keep")
    if consecutive_repeats not in ("keep", "collapse"):
        raise ValueError(f"consecutive_repeats must be 'keep' or 'collapse', got {consecutive_repeats!r}")
    sessions, ids, counts = _test_sessions(test, train)
    if consecutive_repeats == "collapse":
        n_before = len(sessions)
        sessions, ids, counts["collapsed_repeat_clicks"] = _collapse_runs(sessions, ids)
        counts["dropped_short_sessions_after_collapse"] = n_before - len(sessions)
    if max_sessions is not None:
        sessions, ids = sessions[:max_sessions], ids[:max_sessions]
    protocol = {
        "split": "benchmark train/test files (test: the sessions of the last day)",
        "fit_on": "the train file only, one user per training session, cleaned like the other data sets",
        "predict": "each click at position t >= 1 of each test session, from the clicks before it",
        "ranking": "full ranking over all training items, no sampled negatives",
        "excluded": "nothing (items already in the session stay candidates, as in session-rec)",
        "repeats": ("consecutive repeated clicks in test sessions are kept and predicted, as in session-rec"
                    if consecutive_repeats == "keep" else
                    "runs of clicks on one item collapsed to the first (not session-rec's choice)"),
        "unknown_items": "test clicks on items absent from train are dropped (counted), then sessions "
                         "under 2 clicks (counted), as session-rec's preprocessing does",
        "ties": "lower item index first",
        "averaged_over": "predictions",
        "reference": "session-rec evaluation.evaluate_sessions (Ludewig & Jannach 2018)",
        "n_train_sessions": train.n_users,
        "n_train_interactions": len(train),
        "n_items": train.n_items,
        "n_test_sessions": len(sessions),
        "n_test_clicks": int(sum(len(s) for s in sessions)),
        "n_predictions": int(sum(len(s) - 1 for s in sessions)),
        # How much a "repeat what is in the session" strategy can get: nothing is excluded.
        "n_target_is_last_click": int(sum((s[1:] == s[:-1]).sum() for s in sessions)),
        "n_target_in_session": int(sum(len(set(s[:t].tolist()) & {int(s[t])}) for s in sessions
                                       for t in range(1, len(s)))),
        **counts,
        "max_sessions": max_sessions,
        "cleaning": {"train": train_report.as_dict(), "test": test_report.as_dict()},
    }
    if counts["dropped_unknown_item_clicks"]:
        log.warning("session_split name=%s dropped %d test clicks on %d items absent from train",
                    name, counts["dropped_unknown_item_clicks"], counts["n_unknown_items"])
    log.info("session_split name=%s train_sessions=%d items=%d test_sessions=%d predictions=%d",
             name, train.n_users, train.n_items, len(sessions), protocol["n_predictions"])
    return SessionSplit(train=train, catalog=catalog, sessions=tuple(sessions), session_ids=tuple(ids),
                        name=name, protocol=protocol)


def _test_sessions(test: Interactions, train: Interactions) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    """Test sessions as training item indices, unknown items dropped, by first click time."""
    to_train = np.array([train.items.get(e) for e in test.items.ids], dtype=np.int64)
    items = to_train[test.item]
    known = items >= 0
    user, items, ts = test.user[known], items[known], test.timestamp[known]
    order = np.argsort(user, kind="stable")  # rows are time-ordered, so each session stays chronological
    counts = np.bincount(user, minlength=test.n_users)
    per_user = np.split(items[order], np.cumsum(counts)[:-1])
    first_ts = np.full(test.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, user, ts)
    long_enough = np.flatnonzero(counts >= 2)
    by_start = long_enough[np.argsort(first_ts[long_enough], kind="stable")]
    stats = {
        "dropped_unknown_item_clicks": int((~known).sum()),
        "n_unknown_items": int(len(np.unique(test.item[~known]))),
        "dropped_short_sessions": int(test.n_users - len(long_enough)),
    }
    return [per_user[u] for u in by_start], [test.users.ids[u] for u in by_start], stats


def _collapse_runs(sessions: list[np.ndarray], ids: list[str]) -> tuple[list[np.ndarray], list[str], int]:
    """Each run of clicks on one item cut to its first click; sessions left with one click go."""
    kept, kept_ids, dropped = [], [], 0
    for s, i in zip(sessions, ids):
        first = np.concatenate([[True], s[1:] != s[:-1]])
        dropped += int((~first).sum())
        if first.sum() >= 2:
            kept.append(s[first])
            kept_ids.append(i)
    return kept, kept_ids, dropped


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of ``targets[r]`` in row r of ``scores`` (higher first, ties: lower index first, NaN last)."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    rows = np.arange(len(targets))
    own = scores[rows, targets][:, None]
    above = (scores > own).sum(axis=1)
    tied_before = ((scores == own) & (np.arange(scores.shape[1])[None, :] < targets[:, None])).sum(axis=1)
    return (1 + above + tied_before).astype(np.int64)


def rank_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """HR@k, MRR@k and NDCG@k (one relevant item per prediction), averaged over ``ranks``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        inside = ranks <= k
        out[f"hr@{k}"] = float(inside.mean())
        out[f"mrr@{k}"] = float(np.where(inside, 1.0 / ranks, 0.0).mean())
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


def evaluate_sessions(
    model: Recommender,
    split: SessionSplit,
    ks: Sequence[int] = SESSION_KS,
    batch_size: int = 1024,
    progress: bool = False,
) -> dict[str, float]:
    """HR / MRR / NDCG at each k over every test-session prefix; ``model`` must be fitted on ``split.train``.

    Raises ``NotImplementedError`` when the model cannot score histories.
    Returns ``{"hr@20": ..., "mrr@20": ..., "ndcg@20": ..., "n_predictions": ...}``.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive, got {ks}")
    histories, targets, _, _ = split.prefixes()
    if len(targets) == 0:
        raise EvaluationError(f"{split.name}: no test session has 2 clicks")
    n_items = split.n_items
    rows = max(1, min(batch_size, BATCH_BYTES // (4 * n_items)))
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in tqdm(range(0, len(targets), rows), desc=f"sessions {model.name}", disable=not progress,
                      leave=False):
        batch = histories[start:start + rows]
        scores = np.asarray(model.score_histories(batch), dtype=np.float32)
        if scores.shape != (len(batch), n_items):
            raise EvaluationError(f"{model.name}: score_histories returned {scores.shape}, "
                                  f"expected {(len(batch), n_items)}")
        ranks[start:start + len(batch)] = target_ranks(scores, targets[start:start + len(batch)])
    out = rank_metrics(ranks, ks)
    out["n_predictions"] = float(len(targets))
    log.info("evaluated sessions model=%s predictions=%d %s", model.name, len(targets),
             " ".join(f"{m}@{k}={out[f'{m}@{k}']:.4f}" for k in ks for m in ("hr", "mrr")))
    return out


def run_session_report(
    models: Sequence[str] | Literal["all"],
    split: SessionSplit,
    ks: Sequence[int] = SESSION_KS,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    *,
    extra_models: Mapping[str, Recommender] | None = None,
    out_json: Path | None = None,
) -> dict[str, Any]:
    """Fit each model on ``split.train`` and run the session protocol; prints the table.

    ``models``: registered names or "all"; ``extra_models``: unfitted instances
    keyed by report name; ``model_options``: per registered name, factory keyword
    arguments. Returns ``{"dataset", "protocol", "machine", "models": {name:
    {"kind", "train_s", "eval_s", "hr@20", ...}}, "not_applicable": {name:
    {"kind", "reason"}}}`` and writes it to ``out_json`` when given.
    """
    names = available_models() if models == "all" else list(models)
    todo: dict[str, Recommender] = {
        name: make_model(name, **dict((model_options or {}).get(name, {}))) for name in names
    }
    todo.update(extra_models or {})
    ks = tuple(sorted({int(k) for k in ks} | {20}))
    results: dict[str, dict[str, Any]] = {}
    not_applicable: dict[str, dict[str, str]] = {}
    for name, model in todo.items():
        if not model.scores_histories:
            not_applicable[name] = {"kind": model.kind, "reason": "no score_histories: it cannot score "
                                    "sessions it was not trained on"}
            continue
        t0 = time.perf_counter()
        model.fit(split.train, split.catalog)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            figures = evaluate_sessions(model, split, ks=ks, progress=progress)
        except NotImplementedError as exc:
            not_applicable[name] = {"kind": model.kind, "reason": str(exc) or "score_histories not implemented"}
            continue
        entry: dict[str, Any] = {"kind": model.kind, "train_s": round(train_s, 3),
                                 "eval_s": round(time.perf_counter() - t1, 3)}
        entry.update({k: round(v, 6) for k, v in figures.items() if k != "n_predictions"})
        if callable(getattr(model, "report", None)):
            entry.update(model.report())  # e.g. the automatic choice's selection, as run_report does
        results[name] = entry
        log.info("session report dataset=%s model=%s train_s=%.2f hr@20=%.4f mrr@20=%.4f",
                 split.name, name, train_s, entry["hr@20"], entry["mrr@20"])
    report = {
        "dataset": split.name,
        "protocol": {**split.protocol, "ks": list(ks)},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "models": results,
        "not_applicable": not_applicable,
    }
    print(format_session_table(report))
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def format_session_table(report: Mapping[str, Any], metrics: Sequence[str] = SESSION_TABLE_METRICS) -> str:
    """A Markdown table, one row per model, then the models the protocol does not apply to."""
    p = report["protocol"]
    metrics = [m for m in metrics if int(m.split("@")[1]) in p.get("ks", SESSION_KS)]
    header = ["model", "kind", *metrics, "train_s"]
    lines = [f"{report['dataset']}: session protocol (session-rec), {p.get('n_test_sessions', '?')} test sessions, "
             f"{p.get('n_predictions', '?')} predictions over {p.get('n_items', '?')} items, "
             "nothing excluded",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in report["models"].items():
        cells = [name, m["kind"], *(f"{m[k]:.4f}" for k in metrics), f"{m['train_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for name, m in report.get("not_applicable", {}).items():
        lines.append(f"not applicable: {name} ({m['kind']}): {m['reason']}")
    return "\n".join(lines)
