"""Guards against degenerate summaries, for every backend.

A compact model fails in three recognisable ways, and each is worse than no summary when it
is passed on silently (into the reduce step, or to a reader):
- a loop: one phrase or line repeated until it fills the output ("OK. OK. OK. ...",
  "1. User Interface 2. Project Manager 3. User Interface ...");
- a copy: most of the output lies in long verbatim spans of its input;
- a transcript-shaped reply: a run of `Name: ...` lines instead of a summary.

quality_flags() names what it finds; the Summarizer retries once with stronger anti-repetition
settings, then marks what is still degenerate and cuts loops short before the next level.
"""

from __future__ import annotations

import re
from collections import Counter

LOOP, COPY, TRANSCRIPT = "loop", "copy", "transcript"
# Shares of the output above which it is called degenerate.
LOOP_COVERAGE = 0.5
COPY_COVERAGE = 0.5
COPY_SPAN = 8  # words: a verbatim span this long is copied, not summarized

_TOKEN = re.compile(r"[\w']+|[^\w\s]")
_WORDS = re.compile(r"[\w']+")
_LABEL = re.compile(r"(?:^|(?<=[.!?\n]))\s*([A-Z][\w'.-]*(?: [A-Z0-9][\w'.-]*){0,2}|#\w+#):\s")


def _tokens(text: str) -> list[str]:
    # Numbers are one token: "1. X 2. Y 3. X" repeats like "#. X #. Y #. X".
    return ["#" if t.isdigit() else t for t in _TOKEN.findall(text.lower())]


def loop_coverage(text: str) -> float:
    """The share of the output's tokens inside n-grams (n = 2..8) that occur three times or
    more; or the share of its lines that repeat one line. Highest of all."""
    tokens = _tokens(text)
    best = 0.0
    if len(tokens) >= 12:
        for n in range(2, 9):
            if len(tokens) < 3 * n:
                break
            grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
            counts = Counter(grams)
            covered = [False] * len(tokens)
            for i, gram in enumerate(grams):
                if counts[gram] >= 3:
                    covered[i:i + n] = [True] * n
            best = max(best, sum(covered) / len(tokens))
    lines = [ln.strip().lower() for ln in text.splitlines() if ln.strip()]
    if len(lines) >= 3:
        top = Counter(lines).most_common(1)[0][1]
        if top >= 3:
            best = max(best, top / len(lines))
    return best


def copy_coverage(text: str, source: str, span: int = COPY_SPAN) -> float:
    """The share of the output's words inside verbatim `span`-word runs of the source."""
    words = _WORDS.findall(text.lower())
    if len(words) < span:
        return 0.0
    source_words = _WORDS.findall(source.lower())
    seen = {tuple(source_words[i:i + span]) for i in range(len(source_words) - span + 1)}
    covered = [False] * len(words)
    for i in range(len(words) - span + 1):
        if tuple(words[i:i + span]) in seen:
            covered[i:i + span] = [True] * span
    return sum(covered) / len(words)


def speaker_labels(text: str, speakers: set[str] | None = None) -> int:
    """How many `Name:` turn labels the output holds (only the source's speakers, if known)."""
    found = [m.group(1) for m in _LABEL.finditer(text)]
    if speakers:
        found = [f for f in found if f in speakers or f.strip("#") in speakers]
    return len(found)


def quality_flags(text: str, source: str, speakers: set[str] | None = None) -> list[str]:
    """What is degenerate about `text`, a summary of `source`: [], or some of loop, copy,
    transcript."""
    flags = []
    if loop_coverage(text) >= LOOP_COVERAGE:
        flags.append(LOOP)
    if copy_coverage(text, source) >= COPY_COVERAGE:
        flags.append(COPY)
    labels = speaker_labels(text, speakers)
    words = len(_WORDS.findall(text))
    if labels >= 3 or (labels >= 2 and words < 25 * labels):
        flags.append(TRANSCRIPT)
    return flags


def cut_loop(text: str) -> str:
    """The output up to where it starts to repeat itself: what of a loop is worth passing on."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    seen: set[str] = set()
    kept = []
    for line in lines:
        key = line.strip().lower()
        if key in seen:
            break
        seen.add(key)
        kept.append(line)
    text = "\n".join(kept)
    sentences = re.split(r"(?<=[.!?])\s+", text)
    seen.clear()
    kept = []
    for sentence in sentences:
        key = " ".join(_tokens(sentence))
        if key in seen:
            break
        seen.add(key)
        kept.append(sentence)
    out = " ".join(kept) if len(lines) <= 1 else "\n".join(kept)
    # A loop inside one sentence: keep up to the third occurrence of the first repeated 4-gram.
    tokens = out.split()
    grams: Counter = Counter()
    for i in range(len(tokens) - 3):
        gram = tuple(t.lower() for t in tokens[i:i + 4])
        grams[gram] += 1
        if grams[gram] >= 2:
            return " ".join(tokens[:i]).rstrip(",;:") or out
    return out
