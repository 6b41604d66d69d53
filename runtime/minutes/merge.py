"""Items found chapter by chapter become one list: the same item said twice (in two chapters,
or once and again in a closing recap) is kept once, with the earlier statement's evidence and
whatever owner or date either statement gave. The items are merged, never summarized again: a
merge cannot reword what the checks passed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz

from sumctl.runtime.minutes.evidence import content_words

SAME_TEXT = 85  # rapidfuzz token_set_ratio over content words


@dataclass
class Mergeable:
    text: str
    owner: str | None
    recap: bool  # said in a sentence that lists several assignments: a recap of earlier ones


def same_item(a: Mergeable, b: Mergeable) -> bool:
    if a.owner and b.owner and a.owner != b.owner:
        return False
    wa, wb = content_words(a.text), content_words(b.text)
    if _normal(a.text) == _normal(b.text) or (wa and wb and sorted(wa) == sorted(wb)):
        return True
    if wa and wb and fuzz.token_set_ratio(" ".join(wa), " ".join(wb)) >= SAME_TEXT:
        return True
    # A recap names each item in a few words ("Marco on the export fix"): one shared content
    # word with an earlier item of the same owner is the same item.
    if (a.recap or b.recap) and a.owner and a.owner == b.owner:
        return any(fuzz.ratio(x, y) >= SAME_TEXT for x in wa for y in wb)
    return False


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def merge(items: list, key) -> tuple[list, int]:
    """The items in order, with later duplicates folded into the first; `key(item)` gives an
    item's Mergeable view. Returns the kept items and how many were folded."""
    kept: list = []
    views: list[Mergeable] = []
    folded = 0
    for item in items:
        view = key(item)
        match = next((k for k, v in zip(kept, views) if same_item(v, view)), None)
        if match is None:
            kept.append(item)
            views.append(view)
            continue
        folded += 1
        _absorb(match, item)
        views[kept.index(match)] = key(match)
    return kept, folded


def _absorb(kept, duplicate) -> None:
    """Keep the first statement's words; fill what it left open (owner, date) from the
    duplicate, and then its evidence grows to cover the turns that state them."""
    filled = False
    for name in ("owner", "due", "due_text"):
        if hasattr(kept, name) and getattr(kept, name) is None and getattr(duplicate, name, None):
            setattr(kept, name, getattr(duplicate, name))
            filled = True
    if filled:
        kept.evidence = kept.evidence.union(duplicate.evidence)
