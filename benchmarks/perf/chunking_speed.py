"""How long chapterization takes on one very long turn: a one-speaker WebVTT whose cues the
reader merges into a single turn, which chunking must then cut at sentences to fit the budget.

    python -m sumctl.benchmarks.perf.chunking_speed                     # 20,000 and 100,000 cues
    python -m sumctl.benchmarks.perf.chunking_speed --cues 2000 --no-gguf   # a quick check

Each size is chaptered with a real token count: the extractive baseline's (words, at the
budget its bundle gives: a long budget is the worst case for packing sentences) and, unless
--no-gguf or the default model is missing, the embedded default's GGUF tokenizer at its own
input budget. Every chapter is checked against the budget with the same count, so a fast cut
that overflows fails here rather than in a summary. Issue 27 measured 142 s for 20,000 cues
before _split_turn packed with running counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.chunking import chapterize
from sumctl.runtime.transcript import parse_text

SENTENCES = ("We should look at item {i} before the review on Friday.",
             "The export for account {i} still fails on large files, so Marco takes it.",
             "Does anyone object to moving ticket {i} to the next sprint?",
             "Right, number {i} is done and tested")  # no full stop: cues do not always end one


def one_speaker_vtt(cues: int, speaker: str = "Ann") -> str:
    """A WebVTT of `cues` two-second cues, all from one voice."""
    lines = ["WEBVTT", ""]
    for i in range(cues):
        start = 2 * i
        lines += [f"{_stamp(start)} --> {_stamp(start + 2)}",
                  f"<v {speaker}>{SENTENCES[i % len(SENTENCES)].format(i=i)}", ""]
    return "\n".join(lines)


def _stamp(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.000"


def counters(use_gguf: bool) -> dict:
    """name -> (count_tokens, budget), as the backends that ship give them."""
    from sumctl.runtime.backends.extractive import ExtractiveBackend, build_extractive_bundle
    from sumctl.runtime.prompts import default_templates

    template = default_templates()["medium"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        words = ExtractiveBackend(build_extractive_bundle(Path(tmp) / "extractive"))
        out["words"] = (words.count_tokens, words.input_budget(template, 90))
    if use_gguf:
        try:
            from sumctl.runtime.backends.gguf import GgufBackend
            from sumctl.runtime.default_model import default_bundle

            gguf = GgufBackend(default_bundle(verify=False), threads=1)
            out["gguf"] = (gguf.count_tokens, gguf.input_budget(template, 160))
        except Exception as e:  # a benchmark of chunking should not need the model to run
            print(f"gguf: skipped ({e})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cues", default="20000,100000", help="comma-separated VTT sizes")
    parser.add_argument("--no-gguf", action="store_true", help="skip the default model's tokenizer")
    args = parser.parse_args(argv)
    headline: dict = {}
    methods = counters(not args.no_gguf)
    for cues in (int(c) for c in args.cues.split(",")):
        text = one_speaker_vtt(cues)
        t0 = time.perf_counter()
        turns = parse_text(text, name=f"{cues}.vtt").turns
        parse_s = time.perf_counter() - t0
        assert len(turns) == 1, f"expected one merged turn, got {len(turns)}"
        headline[f"cues_{cues}_parse_s"] = round(parse_s, 3)
        headline[f"cues_{cues}_words"] = len(turns[0].text.split())
        for name, (count, budget) in methods.items():
            t0 = time.perf_counter()
            chapters = chapterize(turns, budget, count)
            seconds = time.perf_counter() - t0
            worst = max(count(c.text()) for c in chapters)
            if worst > budget:
                raise SystemExit(f"{name}, {cues} cues: a chapter of {worst} tokens is over the budget of {budget}")
            print(f"{cues:>7,} cues, {name:>5}: {len(chapters):>4} chapters of at most {budget:,} tokens "
                  f"(largest {worst:,}) in {seconds:.2f} s (parsing took {parse_s:.2f} s)")
            headline[f"cues_{cues}_{name}_chapterize_s"] = round(seconds, 3)
            headline[f"cues_{cues}_{name}_chapters"] = len(chapters)
            headline[f"{name}_budget"] = budget
    print_headline(headline)


if __name__ == "__main__":
    main()
