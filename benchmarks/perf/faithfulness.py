"""How often the embedded default's summaries say what the meeting did not: the unsupported-sentence
rate on a hand-labelled set (issue 28).

The set: quality.py's QMSum val specific-query segments (same seed, same shuffle), the first
--limit 30, each summarized at medium length with its query. Every summary sentence (split by
`sumctl.runtime.minutes.cues.sentences`) is looked up by (item id, exact text) in
benchmarks/eval/faithfulness_labels.json, where a person marked it `supported` (everything it
states is said or clearly implied by the segment) or `unsupported` (with why).

Reports sentences, labelled, unsupported, the unsupported rate (unsupported over labelled
sentences) with a 95% bootstrap interval over items, and the unlabelled sentences. A changed
model or a later guard changes the sentences: those not in the labels are counted as unlabelled,
and `--write-unlabelled FILE` writes them (with the query and the segment) for a person to label.

    python -m sumctl.benchmarks.perf.faithfulness [--limit 30] [--threads 2] [--model PATH]
        [--summaries FILE] [--out FILE] [--write-unlabelled FILE]

A run with the model scores its summaries twice: as the model wrote them, and as the user gets
them, after the runtime's faithfulness check (runtime/faithfulness.py) dropped the sentences the
transcript does not bear out. `--summaries FILE` (a JSON list of {"id", "summary"}) scores given
summaries without running a model; `--out FILE` writes the checked summaries this run made.
Ends with one line of JSON.

The labels were made on 2026-12-06 from the default's greedy output (2 threads, avx2 CPU): 76
sentences, 47 unsupported. Greedy decoding is deterministic for one llama.cpp build and thread
count; another build or --threads may change a word, and a changed sentence shows as unlabelled.
The splitter is the minutes' own (the one a sentence-dropping guard would use); it also cuts after
"Ms." and "Mrs.", which split one summary that copied a transcript line into fragments.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from sumctl.benchmarks.eval.datasets import prepare_qmsum
from sumctl.benchmarks.eval.metrics import BOOTSTRAP_RESAMPLES, CONFIDENCE
from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.jsonout import strict_dumps, strict_loads
from sumctl.runtime.minutes.cues import sentences
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LABELS = Path(__file__).resolve().parents[1] / "eval" / "faithfulness_labels.json"
LABEL_VALUES = ("supported", "unsupported")
# quality.py's default seed: the labelled items are the first of its QMSum sample.
SEED = 0


def load_items(seed: int = SEED, limit: int = 30) -> list[dict]:
    records = prepare_qmsum(SHARED / "qmsum", split="val", specific=True)
    random.Random(seed).shuffle(records)
    return records[:limit]


def load_labels(path: Path = LABELS) -> dict:
    return strict_loads(path.read_text(encoding="utf-8"))


def label_index(labels: dict) -> dict[tuple[str, str], str]:
    """(item id, sentence text) -> label."""
    return {(item["id"], s["text"]): s["label"]
            for item in labels["items"] for s in item["sentences"]}


def ratio_interval(unsupported: list[int], labelled: list[int], *, seed: int,
                   resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """The pooled rate sum(unsupported) / sum(labelled) with a percentile bootstrap over items.

    Not metrics.bootstrap_ci: that bootstraps a mean of per-item values, and a mean of per-item
    rates would weigh a two-sentence summary like a ten-sentence one; resampling whole items keeps
    the sentences of one summary together (they are not independent)."""
    u = np.asarray(unsupported, dtype=float)
    n = np.asarray(labelled, dtype=float)
    if n.sum() == 0:
        return {"mean": None, "low": None, "high": None, "n": int(u.size)}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, u.size, size=(resamples, u.size))
    totals = n[picks].sum(axis=1)
    # A resample of only unlabelled items has no rate; it says nothing either way.
    keep = totals > 0
    rates = u[picks].sum(axis=1)[keep] / totals[keep]
    tail = (1 - confidence) / 2 * 100
    return {"mean": float(u.sum() / n.sum()), "low": float(np.percentile(rates, tail)),
            "high": float(np.percentile(rates, 100 - tail)), "n": int(u.size)}


def score(summaries: list[dict], labels: dict, *, seed: int = SEED) -> dict:
    """Counts and the unsupported rate of `summaries` ([{"id", "summary"}]) under `labels` (the
    labels file's object). Pure: same in, same out."""
    index = label_index(labels)
    per_item, unlabelled = [], []
    for s in summaries:
        counts = {"id": s["id"], "sentences": 0, "labelled": 0, "unsupported": 0}
        for text in sentences(s["summary"]):
            counts["sentences"] += 1
            label = index.get((s["id"], text))
            if label is None:
                unlabelled.append({"id": s["id"], "text": text})
                continue
            counts["labelled"] += 1
            counts["unsupported"] += label == "unsupported"
        per_item.append(counts)
    rate = ratio_interval([c["unsupported"] for c in per_item], [c["labelled"] for c in per_item],
                          seed=seed)
    return {"items": len(per_item),
            "sentences": sum(c["sentences"] for c in per_item),
            "labelled": sum(c["labelled"] for c in per_item),
            "unsupported": sum(c["unsupported"] for c in per_item),
            "unlabelled": len(unlabelled),
            "items_with_unsupported": sum(1 for c in per_item if c["unsupported"]),
            "unsupported_rate": rate,
            "per_item": per_item,
            "unlabelled_sentences": unlabelled}


def summarize_items(items: list[dict], model, threads: int) -> tuple[list[dict], list[dict], float]:
    """Each item's summary as the user gets it (after the faithfulness check dropped what the
    turns do not bear out), and as the model wrote it: the top generation, before the check."""
    summarizer = Summarizer(model, threads=threads, minutes=False)
    checked, written = [], []
    started = time.perf_counter()
    try:
        for r in items:
            t0 = time.perf_counter()
            summary = summarizer.summarize(parse_text(r["transcript"], name=r["id"]),
                                           length="medium", query=r.get("query"))
            checked.append({"id": r["id"], "summary": summary.text})
            top = [c for c in summary.chapters if c.level == summary.levels - 1][-1]
            written.append({"id": r["id"], "summary": top.summary.strip()})
            print(f"    {r['id']}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        summarizer.close()
    return checked, written, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="a bundle or installed model (default: the embedded default)")
    parser.add_argument("--summaries", type=Path, help="score these ([{id, summary}] JSON), no model")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--out", type=Path, help="write the summaries made here ([{id, summary}])")
    parser.add_argument("--write-unlabelled", type=Path, metavar="FILE",
                        help="write the unlabelled sentences, with query and segment, for labelling")
    args = parser.parse_args(argv)

    items = load_items(args.seed, args.limit)
    generation_seconds, written = None, None
    if args.summaries:
        summaries = strict_loads(args.summaries.read_text(encoding="utf-8"))
    else:
        print(f"summarizing {len(items)} QMSum val specific segments (medium, with the query):",
              flush=True)
        summaries, written, generation_seconds = summarize_items(items, args.model, args.threads)
        print(f"generation: {generation_seconds:.1f} s, "
              f"{generation_seconds / max(1, len(items)):.1f} s per item", flush=True)
        if args.out:
            args.out.write_text(strict_dumps(summaries, indent=2) + "\n", encoding="utf-8")

    labels = load_labels(args.labels) if args.labels.exists() else {"items": []}
    before = None
    if written is not None:
        before = score(written, labels, seed=args.seed)["unsupported_rate"]
        if before["mean"] is not None:
            print(f"as the model wrote them: {100 * before['mean']:.1f}% "
                  f"[{100 * before['low']:.1f}, {100 * before['high']:.1f}] unsupported; "
                  "after the faithfulness check:")
    result = score(summaries, labels, seed=args.seed)
    rate = result["unsupported_rate"]
    print(f"\n{result['items']} items, {result['sentences']} sentences, {result['labelled']} labelled, "
          f"{result['unsupported']} unsupported, {result['unlabelled']} unlabelled")
    if rate["mean"] is not None:
        print(f"unsupported rate: {100 * rate['mean']:.1f}% "
              f"[{100 * rate['low']:.1f}, {100 * rate['high']:.1f}] (95% bootstrap over items); "
              f"{result['items_with_unsupported']} of {result['items']} summaries have one")

    if args.write_unlabelled:
        by_id = {r["id"]: r for r in items}
        grouped: dict[str, list[str]] = {}
        for s in result["unlabelled_sentences"]:
            grouped.setdefault(s["id"], []).append(s["text"])
        todo = [{"id": i, "query": by_id.get(i, {}).get("query", ""),
                 "segment": by_id.get(i, {}).get("transcript", ""), "sentences": texts}
                for i, texts in grouped.items()]
        args.write_unlabelled.write_text(strict_dumps(todo, indent=2) + "\n", encoding="utf-8")
        print(f"unlabelled sentences of {len(todo)} items written to {args.write_unlabelled}")

    headline = {"items": result["items"], "sentences": result["sentences"],
                "labelled": result["labelled"], "unsupported": result["unsupported"],
                "unlabelled": result["unlabelled"],
                "unsupported_rate": None if rate["mean"] is None else round(rate["mean"], 4),
                "unsupported_rate_low": None if rate["low"] is None else round(rate["low"], 4),
                "unsupported_rate_high": None if rate["high"] is None else round(rate["high"], 4),
                "items_with_unsupported": result["items_with_unsupported"]}
    if generation_seconds is not None:
        headline["generation_seconds"] = round(generation_seconds, 1)
    if before is not None and before["mean"] is not None:
        headline["unsupported_rate_as_written"] = round(before["mean"], 4)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
