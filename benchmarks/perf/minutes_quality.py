"""Minutes against hand labels: which way of finding items should each backend ship?

The labelled set is tests/data/minutes/: 6 meetings written for it (traps for invented owners
and dates, recaps, rejected proposals) and 6 QMSum val AMI meetings, labelled by reading
(decisions, action items with owners and due dates). Neither was trained on. For each method
(cues, hybrid, model; runtime/minutes/extract.py) through the runtime's own Summarizer:
precision and recall of decisions and action items, owner accuracy, invented owners and dates
(target 0), the model's replies that had the asked-for shape before any repair, JSON-schema
validity of the minutes (runtime/schemas/summary.schema.json), items dropped by the evidence
check, and seconds per meeting. Matching is benchmarks/eval/minutes.py's. Ends with one line
of JSON.

    python -m sumctl.benchmarks.perf.minutes_quality [--methods cues hybrid model] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sumctl.benchmarks.eval.minutes import Tally, load_labelled, score
from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.minutes import METHODS
from sumctl.runtime.outputs import summary_validator
from sumctl.runtime.jsonout import strict_dumps

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "tests" / "data" / "minutes"
QMSUM = REPO.parent / "shared" / "data" / "qmsum"
MINUTES_KEYS = ("decisions", "action_items", "open_questions", "extraction")


def schema_errors(minutes: dict) -> list[str]:
    """The minutes' fields checked against the published record schema's own definitions."""
    validator = summary_validator()
    only_minutes = validator.evolve(schema={**validator.schema, "required": list(MINUTES_KEYS)})
    return [e.message for e in only_minutes.iter_errors(minutes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--model", default=None, help="a bundle; default: the embedded default")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--qmsum", type=Path, default=QMSUM)
    parser.add_argument("--out", type=Path, default=None, help="write every item and score here")
    args = parser.parse_args(argv)

    from sumctl.runtime.summarizer import Summarizer

    meetings = load_labelled(args.labels, args.qmsum if args.qmsum.is_dir() else None)
    summarizer = Summarizer(args.model, threads=args.threads)
    print(f"model: {summarizer.bundle.display_name}; {len(meetings)} labelled meetings "
          f"({sum(m.source == 'qmsum' for m in meetings)} QMSum val)")
    results, detail = {}, {}
    for method in args.methods:
        groups = {g: {"decisions": Tally(), "action_items": Tally()} for g in ("own", "qmsum", "all")}
        counts = {"dropped_by_evidence": 0, "owners_removed": 0, "model_replies": 0,
                  "model_replies_valid": 0, "schema_valid": 0, "meetings": 0}
        started = time.perf_counter()
        for meeting in meetings:
            transcript = meeting.transcript()
            minutes = summarizer.minutes(transcript, method=method, meeting_date=meeting.date).to_dict()
            counts["meetings"] += 1
            counts["schema_valid"] += not schema_errors(minutes)
            for key in ("dropped_by_evidence", "owners_removed", "model_replies", "model_replies_valid"):
                counts[key] += minutes["extraction"].get(key, 0)
            tallies = score(minutes, meeting.labels, transcript, meeting.date)
            for kind, tally in tallies.items():
                groups[meeting.source][kind].add(tally)
                groups["all"][kind].add(tally)
            detail.setdefault(method, {})[meeting.name] = {
                "minutes": minutes, "misses": {k: t.misses for k, t in tallies.items()},
                "extras": {k: t.extras for k, t in tallies.items()}}
        counts["seconds_per_meeting"] = (time.perf_counter() - started) / max(1, len(meetings))
        results[method] = {"groups": groups, "counts": counts}

    print(f"\n{'method':<7} {'set':<6} {'dec P':>6} {'dec R':>6} {'act P':>6} {'act R':>6} "
          f"{'owner':>6} {'inv.own':>7} {'inv.date':>8} {'schema':>7} {'replies':>8} {'dropped':>7} {'s/mtg':>6}")
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"
    for method, r in results.items():
        c = r["counts"]
        for group, t in r["groups"].items():
            d, a = t["decisions"], t["action_items"]
            tail = (f"{c['schema_valid']}/{c['meetings']:<5} "
                    f"{c['model_replies_valid']}/{c['model_replies']:<6} {c['dropped_by_evidence']:>7} "
                    f"{c['seconds_per_meeting']:>6.1f}") if group == "all" else ""
            print(f"{method:<7} {group:<6} {pct(d.precision):>6} {pct(d.recall):>6} {pct(a.precision):>6} "
                  f"{pct(a.recall):>6} {pct(a.owner_accuracy):>6} {a.invented_owners:>7} "
                  f"{a.invented_dates:>8} {tail}")
    print("\n(dec/act P and R: precision and recall of decisions and action items; owner: right "
          "owner among matched action items; inv.: owners or dates their evidence does not state; "
          "schema: meetings whose minutes validate; replies: model replies in the asked-for shape)")
    if args.out:
        args.out.write_text(strict_dumps(detail, indent=2, ensure_ascii=False))

    headline = {"meetings": len(meetings)}
    for method, r in results.items():
        t, c = r["groups"]["all"], r["counts"]
        d, a = t["decisions"], t["action_items"]
        headline |= {
            f"{method}_decision_precision": _round(d.precision), f"{method}_decision_recall": _round(d.recall),
            f"{method}_action_precision": _round(a.precision), f"{method}_action_recall": _round(a.recall),
            f"{method}_owner_accuracy": _round(a.owner_accuracy),
            f"{method}_invented_owners": a.invented_owners, f"{method}_invented_dates": a.invented_dates,
            f"{method}_schema_valid_rate": _round(c["schema_valid"] / max(1, c["meetings"])),
            f"{method}_dropped_by_evidence": c["dropped_by_evidence"],
            f"{method}_seconds_per_meeting": round(c["seconds_per_meeting"], 2)}
        if c["model_replies"]:
            headline[f"{method}_reply_valid_rate"] = _round(c["model_replies_valid"] / c["model_replies"])
    print_headline(headline)
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    sys.exit(main())
