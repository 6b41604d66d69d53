"""The checks every item passes before it reaches a reader, whoever proposed it.

- Its key content words are in its evidence turns (fuzzily: "tested" matches "test"), or it
  is dropped: a model that writes an item the meeting does not contain is caught here.
- Its owner is a speaker of the meeting or a person named in its evidence turns, or null.
- Its due date is read from its evidence turns, never taken from a model: no date is
  invented, and one that is said but cannot be resolved stays as said, with a null ISO date.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz, process

WORD_MATCH = 85  # rapidfuzz ratio above which two words are one ("schedule", "schedules")
SUPPORT = 0.6  # share of an item's content words its evidence must contain
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below
between both but by can could did do does doing done down during each few for from further get
gets got had has have having he her here hers him his how i if in into is it its itself just let
lets let's like me more most my no nor not now of off on once only or other our ours out over own
same she should so some such than that the their theirs them then there these they this those
through to too under until up very was we were what when where which while who whom why will
with would you your yours yeah okay ok um uh well really think going gonna want need needs
i'll we'll you'll it's that's there's i'm we're they're don't can't won't shall must might
may one also maybe sure thing things something anything everything team meeting
""".split())


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS]


def support(text: str, evidence: str) -> float:
    """The share of `text`'s content words that its evidence contains (0 when it has none)."""
    words = content_words(text)
    pool = set(content_words(evidence))
    if not words or not pool:
        return 0.0
    found = sum(1 for w in words if w in pool
                or process.extractOne(w, pool, scorer=fuzz.ratio, score_cutoff=WORD_MATCH))
    return found / len(words)


def supported(text: str, evidence: str) -> bool:
    return support(text, evidence) >= SUPPORT


def checked_owner(owner: str | None, speakers: list[str], evidence_speakers: set[str],
                  evidence: str) -> str | None:
    """The owner, if the evidence turns bear it out: one of their speakers, or a person they
    name (a speaker's first name or role counts as naming that speaker, who is then written
    as the meeting writes them). Otherwise None: a speaker elsewhere in the meeting is not
    this item's owner just because a model said so."""
    if not owner or not owner.strip():
        return None
    owner = " ".join(owner.split()).strip(" @.,:")
    named = re.search(rf"\b{re.escape(owner)}\b", evidence, re.I) is not None
    for speaker in speakers:
        short = speaker.split()[0] if len(speaker.split()) > 1 else None
        if owner.lower() in (speaker.lower(), (short or "").lower()):
            said = speaker in evidence_speakers or named or re.search(
                rf"\b{re.escape(speaker)}\b", evidence, re.I) is not None
            return speaker if said else None
    return owner if named else None


def locate(text: str, texts: list[str], reach: int = 1) -> tuple[int, int, float] | None:
    """The span of at most reach+1 consecutive texts that best supports `text`, as (first, last,
    support), or None when nothing supports it enough. How a model's item, which cites no turn,
    finds its evidence."""
    scored = []
    for i in range(len(texts)):
        for j in range(i, min(len(texts), i + reach + 1)):
            span = " ".join(texts[i:j + 1])
            score = support(text, span)
            # A wider span must earn its extra turns; between equals, the closer wording wins.
            scored.append((score - 0.1 * (j - i), fuzz.token_set_ratio(text.lower(), span.lower()),
                           i, j, score))
    best = max(scored, default=None)
    best = (best[2], best[3], best[4]) if best is not None else None
    return best if best is not None and best[2] >= SUPPORT else None
