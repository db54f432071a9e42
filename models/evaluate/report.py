"""One report: train every model on the same split, evaluate, print a table, write JSON and a chart."""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from models.base import Recommender
from models.data.dataset import Split, leave_last_out, load_dataset
from models.evaluate.ranking import DEFAULT_KS, evaluate
from models.evaluate.registry import available_models, make_model

log = logging.getLogger(__name__)

TABLE_METRICS = ("hr@10", "ndcg@10", "recall@10", "mrr@10", "coverage@10")


def load_split(dataset: str, max_users: int | None = None, **options: Any) -> Split:
    """``load_dataset`` then ``leave_last_out``; ``max_users`` keeps the first users (by id) only."""
    if max_users is not None:
        options["max_users"] = max_users
    interactions, catalog = load_dataset(dataset, **options)
    return leave_last_out(interactions, catalog, name=dataset)


def run_report(
    dataset: str,
    models: list[str] | Literal["all"] = "all",
    out_json: Path | None = None,
    out_png: Path | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    extra_models: Mapping[str, Recommender] | None = None,
    *,
    split: Split | None = None,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    test_history: Literal["train", "train+valid"] = "train+valid",
    dataset_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train each model on one leave-last-out split of ``dataset``; evaluate on validation and test.

    ``models``: registered names (``available_models()``) or "all".
    ``extra_models``: unfitted instances to run too, keyed by report name.
    ``split``: use this split instead of loading ``dataset`` (which then only names it).
    ``model_options``: per registered name, keyword arguments for its factory.
    ``test_history``: what users' histories hold when scoring test; models are
    always fitted on train only (validation is for early stopping and tuning).
    Returns ``{"protocol", "dataset", "models": {name: {"kind", "train_s", "ndcg@10", ...,
    "valid": {...}}}}`` and writes it to ``out_json`` when given.
    """
    if split is None:
        split = load_split(dataset, **dict(dataset_options or {}))
    names = available_models() if models == "all" else list(models)
    todo: dict[str, Recommender] = {
        name: make_model(name, **dict((model_options or {}).get(name, {}))) for name in names
    }
    todo.update(extra_models or {})
    ks = tuple(sorted({int(k) for k in ks} | {10}))
    history = split.train.concat(split.valid) if test_history == "train+valid" else split.train

    results: dict[str, dict[str, Any]] = {}
    for name, model in todo.items():
        t0 = time.perf_counter()
        model.fit(split, split.catalog)
        train_s = time.perf_counter() - t0
        valid = evaluate(model, split, on="valid", ks=ks, progress=progress)
        if test_history == "train+valid":
            model.fold_in(history)
        t1 = time.perf_counter()
        test = evaluate(model, split, on="test", ks=ks, progress=progress)
        entry: dict[str, Any] = {"kind": model.kind, "train_s": round(train_s, 3),
                                 "eval_s": round(time.perf_counter() - t1, 3)}
        entry.update({k: round(v, 6) for k, v in test.items() if k != "n_users"})
        entry["coverage"] = entry["coverage@10"]
        entry["valid"] = {k: round(v, 6) for k, v in valid.items() if k.endswith("@10")}
        if callable(getattr(model, "report", None)):
            entry.update(model.report())  # e.g. the automatic choice's selection
        results[name] = entry
        log.info("report dataset=%s model=%s train_s=%.2f hr@10=%.4f ndcg@10=%.4f",
                 split.name or dataset, name, train_s, entry["hr@10"], entry["ndcg@10"])

    report = {
        "dataset": split.name or dataset,
        "protocol": {
            **split.protocol,
            "ranking": "full ranking over all items, no sampled negatives",
            "excluded": "each user's training items, plus the validation item when scoring test",
            "test_history": test_history,
            "fit_on": "train (validation for early stopping / tuning only)",
            "ks": list(ks),
            "n_test_users": int(len(split.test)),
        },
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "models": results,
    }
    print(format_table(report))
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if out_png is not None:
        plot_report(report, Path(out_png))
    return report


def format_table(report: Mapping[str, Any], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """A Markdown table: one row per model, test metrics and training seconds."""
    header = ["model", "kind", *metrics, "train_s"]
    lines = [f"{report['dataset']}: {report['protocol'].get('split', '?')}, "
             f"{report['protocol'].get('n_test_users', '?')} test users, history={report['protocol'].get('test_history')}",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in report["models"].items():
        cells = [name, m["kind"], *(f"{m[k]:.4f}" for k in metrics), f"{m['train_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for name, m in report["models"].items():
        if "selection" in m:
            lines.append(describe_selection(name, m["selection"]))
    return "\n".join(lines)


def describe_selection(name: str, sel: Mapping[str, Any]) -> str:
    """One line: what an automatic choice tried on validation and what it chose."""
    def notes(c: Mapping[str, Any]) -> str:
        said = [f"{c['rounds']} rounds" if c.get("rounds", 1) > 1 else "",
                "out of time" if c.get("out_of_time") else "", "failed" if c.get("error") else ""]
        said = [n for n in said if n]
        return f" ({', '.join(said)})" if said else ""

    tried = ", ".join(f"{c['name']} {c['valid'].get('ndcg@10', float('nan')):.4f}{notes(c)}" for c in sel["candidates"])
    bar = (f"; best baseline on validation: {sel['best_baseline']} {sel['best_baseline_valid']:.4f}"
           f" ({sel['vs_best_baseline']:+.1%})" if sel.get("best_baseline") and sel.get("vs_best_baseline") is not None
           else "")
    return f"{name} chose {sel['winner']} (validation NDCG@10: {tried}){bar}; {sel['seconds']:.0f} s"


def plot_report(report: Mapping[str, Any], path: Path) -> None:
    """Two panels: @10 metrics per model (bars), and NDCG@K against K (lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    ks = report["protocol"]["ks"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    bar_metrics = ("hr@10", "ndcg@10", "mrr@10")
    width = 0.8 / len(bar_metrics)
    for j, metric in enumerate(bar_metrics):
        ax1.bar([i + j * width for i in range(len(names))], [report["models"][n][metric] for n in names],
                width=width, label=metric)
    ax1.set_xticks([i + width for i in range(len(names))], names, rotation=30, ha="right")
    ax1.set_title(f"{report['dataset']}: test metrics @10")
    ax1.legend()
    for name in names:
        ax2.plot(ks, [report["models"][name][f"ndcg@{k}"] for k in ks], marker="o", label=name)
    ax2.set_xticks(ks, [str(k) for k in ks])
    ax2.set_xlabel("K")
    ax2.set_ylabel("NDCG@K")
    ax2.set_title("NDCG@K")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
