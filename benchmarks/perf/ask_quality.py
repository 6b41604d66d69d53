"""What retrieval costs `sumctl ask`: answers from the whole meeting against answers from the
gold span, on the same questions, with the same model.

QMSum val specific queries (those with a `relevant_text_span`), a seeded sample of --limit
(the same sample as quality.py's for the same seed), each answered twice:
- `retrieval`: the whole meeting, through `answer_question` (BM25 picks the chapters);
- `gold`: only the turns of the query's gold span, through the Summarizer with the query, as
  `sumctl bench` and quality.py score QMSum: what a perfect retriever would hand the model.

For each: ROUGE-1/2/Lsum of the answer against QMSum's reference answer (the bench's scorer,
F1 x 100) with 95% bootstrap intervals (one seed for both, so paired), and seconds per query.
For retrieval also its recall: the share of the gold span's turns inside the chapters read,
macro-averaged over queries (1 where the meeting fit whole), the mean number of chapters per
meeting, and the share of queries whose meeting fit the model's input whole. Ends with one
line of JSON.

    python -m sumctl.benchmarks.perf.ask_quality [--limit 40] [--threads 2] [--length medium]

Run it with nothing else on the machine: it also reports seconds per query.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

from sumctl.benchmarks.eval.datasets import prepare_qmsum
from sumctl.benchmarks.eval.metrics import RougeScorer, bootstrap_ci, word_count
from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.retrieval import answer_question
from sumctl.runtime.summarizer import Summarizer
from sumctl.runtime.transcript import Transcript, normalize_markup, parse_text, read_transcript
from sumctl.runtime.jsonout import strict_dumps

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SETTINGS = ("retrieval", "gold")


def load_queries(seed: int, limit: int) -> list[dict]:
    queries = prepare_qmsum(SHARED / "qmsum", split="val", specific=True)
    random.Random(seed).shuffle(queries)
    return queries[:limit]


def read_meeting(path: Path) -> tuple[Transcript, dict[int, int]]:
    """The meeting as `sumctl ask` reads it, and QMSum's turn indexes -> its turn indexes: the
    reader drops turns that are only markers (`{vocalsound}`), which QMSum's spans count."""
    transcript = read_transcript(path)
    raw = json.loads(path.read_text(encoding="utf-8"))["meeting_transcripts"]
    read_index, at = {}, 0
    for i, turn in enumerate(raw):
        if at < len(transcript.turns) and transcript.turns[at].text == normalize_markup(turn.get("content", "")):
            read_index[i] = at
            at += 1
    if at != len(transcript.turns):
        sys.exit(f"{path}: the reader's turns no longer line up with QMSum's; fix read_meeting")
    return transcript, read_index


def run(summarizer: Summarizer, queries: list[dict], length: str, scorer: RougeScorer) -> list[dict]:
    meetings: dict[str, tuple[Transcript, dict[int, int]]] = {}
    out = []
    for record in queries:
        source = record["meta"]["source"]
        if source not in meetings:
            meetings[source] = read_meeting(SHARED / "qmsum" / source)
        transcript, read_index = meetings[source]
        gold = {read_index[i] for start, end in record["meta"]["span"] for i in range(start, end + 1)
                if i in read_index}

        t0 = time.perf_counter()
        answer = answer_question(summarizer, transcript, record["query"], length=length)
        retrieval_s = time.perf_counter() - t0
        read = {i for c in answer.citations for i in range(c.first_turn, c.last_turn + 1)}
        t0 = time.perf_counter()
        from_gold = summarizer.summarize(parse_text(record["transcript"], name=record["id"]),
                                         query=record["query"], length=length)
        gold_s = time.perf_counter() - t0

        out.append({
            "id": record["id"], "meeting": source, "query": record["query"],
            "chapters": answer.chapters, "chapters_read": len(answer.citations),
            "retrieved": answer.retrieved,
            "recall": len(gold & read) / len(gold) if gold else None,
            "citations": [asdict(c) for c in answer.citations],
            "retrieval": {"answer": answer.text, "seconds": retrieval_s, "words": word_count(answer.text),
                          "scores": scorer.score(answer.text, record["reference"])},
            "gold": {"answer": from_gold.text, "seconds": gold_s, "words": word_count(from_gold.text),
                     "scores": scorer.score(from_gold.text, record["reference"])}})
        done = out[-1]
        print(f"  {record['id']}: chapter(s) {[c.chapter for c in answer.citations]} of "
              f"{answer.chapters}, recall {done['recall'] if done['recall'] is None else round(done['recall'], 2)}, "
              f"Lsum {100 * done['retrieval']['scores']['rougeLsum']:.1f} vs gold "
              f"{100 * done['gold']['scores']['rougeLsum']:.1f}, {retrieval_s:.0f} s + {gold_s:.0f} s",
              flush=True)
    return out


def aggregate(docs: list[dict], seed: int) -> dict:
    metrics = {setting: {k: bootstrap_ci([100 * d[setting]["scores"][k] for d in docs], seed=seed)
                         for k in ("rouge1", "rouge2", "rougeLsum")}
               for setting in SETTINGS}
    for setting in SETTINGS:
        metrics[setting]["seconds_per_query"] = sum(d[setting]["seconds"] for d in docs) / len(docs)
        metrics[setting]["words"] = sum(d[setting]["words"] for d in docs) / len(docs)
    per_meeting = {d["meeting"]: d["chapters"] for d in docs}
    recalls = [d["recall"] for d in docs if d["recall"] is not None]
    metrics.update(
        queries=len(docs), meetings=len(per_meeting),
        retrieval_recall=sum(recalls) / len(recalls),
        retrieval_recall_ci=bootstrap_ci(recalls, seed=seed),
        chapters_per_meeting=sum(per_meeting.values()) / len(per_meeting),
        chapters_read=sum(d["chapters_read"] for d in docs) / len(docs),
        whole_meeting_share=sum(1 for d in docs if not d["retrieved"]) / len(docs))
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--length", default="medium", choices=("long", "medium", "short"))
    parser.add_argument("--model", help="a bundle (default: the embedded default)")
    parser.add_argument("--out", type=Path, help="write every answer and score here (JSON)")
    args = parser.parse_args(argv)

    queries = load_queries(args.seed, args.limit)
    summarizer = Summarizer(args.model, threads=args.threads, minutes=False)
    print(f"{summarizer.bundle.display_name}: {len(queries)} QMSum val specific queries, "
          f"{args.length} answers", flush=True)
    docs = run(summarizer, queries, args.length, RougeScorer())
    summarizer.close()
    m = aggregate(docs, args.seed)

    def ci(values: dict) -> str:
        return f"{values['mean']:.1f} [{values['low']:.1f}, {values['high']:.1f}]"

    print(f"\n{'setting':<10} {'ROUGE-1':>18} {'ROUGE-2':>18} {'ROUGE-Lsum':>18} {'words':>6} {'s/query':>8}")
    for setting in SETTINGS:
        s = m[setting]
        print(f"{setting:<10} {ci(s['rouge1']):>18} {ci(s['rouge2']):>18} {ci(s['rougeLsum']):>18} "
              f"{s['words']:>6.0f} {s['seconds_per_query']:>8.1f}")
    print(f"\nretrieval recall (gold-span turns inside the chapters read): "
          f"{100 * m['retrieval_recall']:.1f}% [{100 * m['retrieval_recall_ci']['low']:.1f}, "
          f"{100 * m['retrieval_recall_ci']['high']:.1f}]; chapters per meeting "
          f"{m['chapters_per_meeting']:.2f} ({m['meetings']} meetings), read per query "
          f"{m['chapters_read']:.2f}; meeting read whole for {100 * m['whole_meeting_share']:.0f}% "
          "of queries")
    if args.out:
        args.out.write_text(strict_dumps({"metrics": m, "queries": docs}, indent=2))
    headline = {"queries": m["queries"], "meetings": m["meetings"], "length": args.length,
                "model": summarizer.model_info["name"]}
    for setting in SETTINGS:
        for key, name in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougeLsum", "rouge_lsum")):
            headline[f"{name}_{setting}"] = round(m[setting][key]["mean"], 2)
        headline[f"rouge_lsum_{setting}_low"] = round(m[setting]["rougeLsum"]["low"], 2)
        headline[f"rouge_lsum_{setting}_high"] = round(m[setting]["rougeLsum"]["high"], 2)
        headline[f"seconds_per_query_{setting}"] = round(m[setting]["seconds_per_query"], 1)
    headline.update(retrieval_recall=round(m["retrieval_recall"], 4),
                    chapters_per_meeting=round(m["chapters_per_meeting"], 2),
                    chapters_read_per_query=round(m["chapters_read"], 2),
                    whole_meeting_share=round(m["whole_meeting_share"], 4))
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
