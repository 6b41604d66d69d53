"""Meeting-aware cleaning: what a listener would not write down, removed before chapterization.

Spoken meetings are full of turns that carry nothing ("Yeah.", "Mm-hmm.", "OK."), fillers
("um", "uh") and stutters ("the the", "w- we"). A small model copies them: a chapter of
backchannels comes back as `Grad A: Mm - hmm. Grad C: Yeah.` repeated. They also spend the
context: on QMSum they are a tenth of the words.

Cleaning keeps, for every turn that survives, the index of the source turn it came from, so
chapters (and any evidence built on them) still point at the original transcript and its times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sumctl.runtime.transcript import Turn

# A turn made only of these says nothing a summary needs. "Yes" and "No" are kept: they can
# be the answer that makes a decision.
_BACKCHANNELS = {
    "yeah", "yep", "yup", "ok", "okay", "right", "alright", "sure", "cool", "great", "good",
    "exactly", "absolutely", "wow", "oh", "ah", "aha", "huh", "hmm", "hm", "mm", "mmm", "mhm",
    "mm-hmm", "uh-huh", "um-hum", "uh-hum", "um", "uh", "er", "erm", "eh", "so", "well", "and",
    "but", "or", "like", "i", "see", "mean", "know", "you", "oops", "sorry", "anyway", "s",
}
# Fillers removed inside a turn. Kept short and unambiguous: "like" and "so" carry meaning as
# often as not, and "well" starts real sentences.
_FILLERS = ("um", "uh", "erm", "er", "uhm", "umm", "uhh", "hmm", "mm", "mmm", "mhm")
_FILLER = re.compile(r"(?<![\w'-])(?:" + "|".join(_FILLERS) + r")(?![\w'-])(?:\s*,)?\s*", re.I)
# What removals leave behind: ", ," and ", ." (a comma where a filler stood).
_STRAY_COMMA = re.compile(r",\s*(?=[,.?!])")
# "Mm - hmm", "uh - huh": transcribers space the hyphen.
_SPACED_HYPHEN = re.compile(r"\b(mm|uh|um) - (hmm|huh|hum)\b", re.I)
# "w- we", "s- so", "th- the": a cut-off start followed by the word it started.
_CUT_OFF = re.compile(r"(?<![\w'-])(\w{1,6})- (?=(\w+))", re.I)
# "the the", "I I I": a word said twice or more in a row.
_REPEAT = re.compile(r"\b(\w+)(?:\s+\1\b)+", re.I)
_LAUGHTER = re.compile(r"[\[(](?:laugh\w*|laughter|chuckles?|coughs?|inaudible|crosstalk|noise)"
                       r"[\])]", re.I)
_WORD = re.compile(r"[\w'-]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.?!;:])")
_LEADING_PUNCT = re.compile(r"^[\s,.;:-]+")


@dataclass
class Cleaned:
    turns: list[Turn]
    source_index: list[int]  # for each kept turn, the index of the turn it came from
    words_before: int
    words_after: int

    def report(self, turns_before: int) -> dict:
        removed = self.words_before - self.words_after
        return {"turns_dropped": turns_before - len(self.turns), "words_removed": removed,
                "words_removed_pct": round(100 * removed / self.words_before, 2)
                if self.words_before else 0.0}


def clean_text(text: str) -> str:
    """One turn's text without fillers, stutters and laughter markers."""
    text = _LAUGHTER.sub(" ", text)
    text = _SPACED_HYPHEN.sub(r"\1-\2", text)
    text = _CUT_OFF.sub(lambda m: "" if m[2].lower().startswith(m[1].lower()) else m[0], text)
    text = _FILLER.sub("", text)
    text = _REPEAT.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    text = _STRAY_COMMA.sub("", text)
    text = _LEADING_PUNCT.sub("", text)
    return text[:1].upper() + text[1:] if text[:1].islower() and text != text.lower() else text


def says_nothing(text: str) -> bool:
    """A turn of backchannels and fillers only ("Yeah.", "Mm-hmm, OK.", "So")."""
    words = [w.lower().strip("'-") for w in _WORD.findall(text)]
    return all(w in _BACKCHANNELS for w in words)


def clean_turns(turns: list[Turn]) -> Cleaned:
    """Drop the turns that say nothing and clean the rest, keeping each survivor's source index.
    A transcript that would be left empty is kept as it is: summarizing something beats
    summarizing nothing."""
    kept: list[Turn] = []
    index: list[int] = []
    before = after = 0
    for i, turn in enumerate(turns):
        before += len(turn.text.split())
        text = clean_text(turn.text)
        if not text or says_nothing(text):
            continue
        kept.append(Turn(turn.speaker, text, turn.start, turn.end))
        index.append(i)
        after += len(text.split())
    if not kept:
        return Cleaned(list(turns), list(range(len(turns))), before, before)
    return Cleaned(kept, index, before, after)
