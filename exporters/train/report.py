"""The training report: the loss curve (PNG) and ROUGE on --eval before and after training.

Evaluation runs the runtime's own Summarizer over the model in memory (exporters/train/hf_backend.py),
so chapterization, prompts and generation settings are those of the exported bundle, and
scores with the bench's ROUGE (sumctl.runtime.evaluation): same metric, same bootstrap.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from sumctl.benchmarks.eval.metrics import ROUGE_TYPES, RougeScorer, bootstrap_ci
from sumctl.benchmarks.eval.records import Dataset


def evaluate(summarizer_for: Callable[[str], object], dataset: Dataset, default_length: str, *,
             seed: int, progress: Callable | None = None) -> dict:
    """ROUGE-1/2/Lsum (mean and 95% bootstrap CI) of the model's summaries of `dataset`.

    `summarizer_for(length)` gives a Summarizer; each record is summarized at its own `length`,
    or `default_length`.
    """
    scorer = RougeScorer()
    started = time.perf_counter()
    rows = []
    records = dataset.records
    for record in (progress(records) if progress else records):
        length = record.extra.get("length") or default_length
        summary = summarizer_for(length).summarize(record.transcript, length=length,
                                                   query=record.query)
        scores = scorer.score(summary.text, record.reference)
        rows.append({"id": record.id, "length": length, "summary": summary.text,
                     "chapters": len(summary.top_chapters()),
                     **{k: round(scores[k], 6) for k in ROUGE_TYPES}})
    return {"n": len(rows), "seconds": round(time.perf_counter() - started, 3),
            **{k: bootstrap_ci([r[k] for r in rows], seed=seed) for k in ROUGE_TYPES},
            "records": rows}


def compare(before: dict, after: dict, *, seed: int) -> dict:
    """After minus before, per metric, with a paired bootstrap interval over the same records."""
    by_id = {r["id"]: r for r in before["records"]}
    pairs = [(by_id[r["id"]], r) for r in after["records"] if r["id"] in by_id]
    return {k: bootstrap_ci([a[k] - b[k] for b, a in pairs], seed=seed) for k in ROUGE_TYPES}


def loss_points(log_history: list[dict]) -> list[tuple[int, float]]:
    return [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]


def plot_loss(points: list[tuple[int, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="o" if len(points) < 40 else None, markersize=3, linewidth=1.4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (summary tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_scores(result: dict | None) -> str:
    if not result:
        return "n/a"
    return "  ".join(f"{k} {result[k]['mean']:.4f} [{result[k]['low']:.4f}, {result[k]['high']:.4f}]"
                     for k in ROUGE_TYPES)
