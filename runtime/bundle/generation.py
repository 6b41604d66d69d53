"""A manifest's `generation`: the decoding defaults a bundle was exported with, typed.

Readers use the fields, never the JSON keys, so a setting has one name in code. The JSON form
is format version 1's, written unchanged: `repeat_penalty` keeps llama.cpp's spelling because
an older sumctl reading a new GGUF bundle would otherwise drop its penalty without a word, and
`max_new_tokens` is one budget per summary length (an int, still read, meant every length).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from sumctl.runtime.errors import BundleError
from sumctl.runtime.prompts import LENGTHS, MAX_NEW_TOKENS

# The file's name for the field `repetition_penalty`; the field's own name is read too.
_PENALTY_KEY = "repeat_penalty"


class _Invalid(ValueError):
    def __init__(self, name: str, value: Any, need: str):
        super().__init__(f"generation {name} {value!r} {need}")
        self.name, self.value, self.need = name, value, need


def _whole(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _Invalid(name, value, "is not a positive whole number" if low > 0
                       else "is not a whole number of 0 or more")
    return value


def _real(name: str, value: Any, need: str = "", ok=lambda value: True) -> float:
    # JSON reads NaN and Infinity, which would reach llama.cpp as they are.
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not ok(value)):
        raise _Invalid(name, value, f"is not a finite number{need}")
    return float(value)


def _budgets(value: Any) -> Mapping[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = dict.fromkeys(LENGTHS, _whole("max_new_tokens", value, 1))
    if not isinstance(value, Mapping):
        raise _Invalid("max_new_tokens", value, "is neither a whole number nor one per length")
    # A length the manifest does not name gets sumctl's budget, as before the format was typed;
    # one this sumctl does not know (a newer sumctl's) is kept for the round trip.
    budgets = {**MAX_NEW_TOKENS, **value}
    for length, tokens in budgets.items():
        _whole(f"max_new_tokens {length}", tokens, 1)
    return MappingProxyType(budgets)


# A chapter's summary is capped at a quarter of its chapter and at least 16 tokens, so that every
# reduce level shrinks the text: a chapter must hold four times that.
MIN_CHAPTER_TOKENS = 64


def is_chapter_tokens(value: Any) -> bool:
    """Whether `value` may cap a chapter: None (no cap) or a whole number of at least
    MIN_CHAPTER_TOKENS. The manifest's field and a summary's --chapter-tokens both ask this."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and value >= MIN_CHAPTER_TOKENS)


def _chapter_tokens(value: Any) -> int | None:
    if not is_chapter_tokens(value):
        raise _Invalid("chapter_tokens", value, f"is not a whole number of at least {MIN_CHAPTER_TOKENS}")
    return value


@dataclass(frozen=True)
class GenerationDefaults:
    """Decoding defaults for every summary of a bundle; a Summarizer's own settings override
    them. Unset fields are sumctl's defaults: greedy, no n-gram blocking, no penalty."""

    max_new_tokens: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict(MAX_NEW_TOKENS)))
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    temperature: float = 0.0
    seed: int = 0
    repetition_penalty: float = 1.0
    # The most transcript tokens in one chapter of a transcript too long for one pass; None: as
    # many as the model's input holds. A small model fine-tuned on short transcripts summarizes
    # chapters of about that length better, and reads them faster (attention grows with the
    # tokens before each one).
    chapter_tokens: int | None = None
    # Keys a newer sumctl may add, kept so an old sumctl rewriting the manifest loses nothing.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        checked = {
            "max_new_tokens": _budgets(self.max_new_tokens),
            "num_beams": _whole("num_beams", self.num_beams, 1),
            "no_repeat_ngram_size": _whole("no_repeat_ngram_size", self.no_repeat_ngram_size, 0),
            "length_penalty": _real("length_penalty", self.length_penalty),
            "temperature": _real("temperature", self.temperature, " of 0 or more", lambda t: t >= 0),
            "seed": _whole("seed", self.seed, 0),
            "repetition_penalty": _real("repetition_penalty", self.repetition_penalty, " over 0",
                                        lambda p: p > 0),
            "chapter_tokens": _chapter_tokens(self.chapter_tokens),
            "extra": MappingProxyType(copy.deepcopy(dict(self.extra))),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __reduce__(self):
        # Mapping proxies do not pickle; a bundle crosses into worker processes.
        return (type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v
                                  for v in (getattr(self, f.name) for f in fields(self))))

    def max_new_tokens_for(self, length: str) -> int:
        """The summary budget of one length (one of prompts.LENGTHS), in generated tokens."""
        return self.max_new_tokens[length]

    def to_dict(self) -> dict:
        """The manifest's JSON form (format version 1's keys)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["max_new_tokens"] = dict(self.max_new_tokens)
        data[_PENALTY_KEY] = data.pop("repetition_penalty")
        if data["chapter_tokens"] is None:  # format version 1 as written before the field
            del data["chapter_tokens"]
        return {**data, **copy.deepcopy(dict(self.extra))}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "GenerationDefaults":
        """Read a manifest's `generation`, refusing a bad value with one line naming `where`
        (the manifest's path) and the key as the file spells it."""
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: generation must be a JSON object (re-export the model)")
        data = dict(data)
        spelled = {}
        if _PENALTY_KEY in data:
            penalty = data.pop(_PENALTY_KEY)
            if data.setdefault("repetition_penalty", penalty) != penalty:
                raise BundleError(f"{where}: generation sets both {_PENALTY_KEY} and "
                                  "repetition_penalty, to different values; keep one")
            spelled["repetition_penalty"] = _PENALTY_KEY
        names = {f.name for f in fields(cls)} - {"extra"}
        try:
            return cls(**{k: v for k, v in data.items() if k in names},
                       extra={k: v for k, v in data.items() if k not in names})
        except _Invalid as e:
            raise BundleError(f"{where}: generation {spelled.get(e.name, e.name)} {e.value!r} {e.need} "
                              "(fix it or re-export the model)") from None
