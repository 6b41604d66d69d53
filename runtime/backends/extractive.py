"""An extractive baseline backend: no neural model, picks the transcript's most central sentences.

It is the smoke-test model when no real one is installed, the "trivial backend" that measures the
watcher's own overhead, and a floor in `sumctl bench` (a summarizer that cannot beat it is
not worth its cost). Scoring is Luhn-style: a sentence scores the mean document frequency of
its content words.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cached_property
from pathlib import Path

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions
from sumctl.runtime.bundle.configs import CONFIG, ExtractiveConfig
from sumctl.runtime.bundle import Bundle, GenerationDefaults, Manifest, package_versions, write_manifest
from sumctl.runtime.prompts import LENGTHS, TRANSCRIPT_SLOT, VERDICT_INSTRUCTION, default_templates

_WORD = re.compile(r"[a-z][a-z']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    "a about above after again all also am an and any are as at be because been before being "
    "but by can could did do does doing don't down during each few for from further get got had "
    "has have having he her here hers him his how i i'm if in into is it it's its just know "
    "like me more most my no nor not now of off oh okay on once only or other our out over own "
    "really right said same she should so some such than that that's the their them then there "
    "these they think this those through to too um uh under until up very was we well were what "
    "when where which while who whom why will with would yeah yes you your".split()
)


class ExtractiveBackend(Backend):
    name = "extractive"
    extractive = True
    honours_stronger = False  # it reads no generation settings: a retry would repeat it

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        return self.bundle.manifest.max_input_tokens - self.count_tokens(template.replace(TRANSCRIPT_SLOT, ""))

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        return [self._summarize(p, options.max_new_tokens) for p in prompts]

    def transcript_of(self, prompt: str) -> str:
        """What a prompt holds in its transcript slot. The Summarizer fills the default query,
        minutes and verdict templates in even for this bundle, whose own prompts are bare:
        without this, the instruction and the question were the most "central" sentences and
        the baseline answered a --query by quoting sumctl's prompt (issue 27)."""
        for frame in self._frames:
            m = frame.fullmatch(prompt)
            if m:
                return m.group("transcript")
        return prompt

    @cached_property
    def _frames(self) -> list[re.Pattern]:
        templates = {*self.bundle.manifest.prompts.values(), *default_templates().values(),
                     VERDICT_INSTRUCTION}
        # The most text around the slot first: a bare "{transcript}" matches anything.
        ordered = sorted((t for t in templates if t.count(TRANSCRIPT_SLOT) == 1), key=lambda t: -len(t))
        return [_frame(t) for t in ordered]

    def _summarize(self, prompt: str, max_words: int) -> Generation:
        text = self.transcript_of(prompt)
        sentences = [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= 4]
        if not sentences:
            sentences = [text.strip()]
        freq = Counter(w for s in sentences for w in _content_words(s))

        def score(s: str) -> float:
            words = _content_words(s)
            return sum(freq[w] for w in words) / (len(words) + 1)

        ranked = sorted(range(len(sentences)), key=lambda i: -score(sentences[i]))
        chosen, used = [], 0
        for i in ranked:
            n = len(sentences[i].split())
            if chosen and used + n > max_words:
                continue
            chosen.append(i)
            used += n
            if used >= max_words:
                break
        words = " ".join(sentences[i] for i in sorted(chosen)).split()[:max_words]
        return Generation(" ".join(words), self.count_tokens(prompt), len(words))


def _frame(template: str) -> re.Pattern:
    """A pattern for prompts made from `template`: its text as written around the transcript,
    any other slot (the question, a hybrid item) as any text."""
    before, after = (re.sub(r"\\\{\w+\\\}", "(?:.*?)", re.escape(side))
                     for side in template.split(TRANSCRIPT_SLOT))
    return re.compile(f"{before}(?P<transcript>.*){after}", re.S)


def _content_words(sentence: str) -> list[str]:
    return [w for w in _WORD.findall(sentence.lower()) if w not in _STOPWORDS]


def build_extractive_bundle(out: Path, *, max_input_tokens: int = 200_000) -> Bundle:
    """A bundle for the extractive baseline. The prompt is the bare transcript: it reads no
    instructions, the summary length comes from the word budget."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extractive.json").write_text(json.dumps({"scoring": "luhn-mean-frequency"}) + "\n")
    manifest = Manifest(
        backend=ExtractiveBackend.name,
        source={"model": "builtin:extractive", "revision": "1"},
        quantization="none",
        max_input_tokens=max_input_tokens,
        prompts={length: TRANSCRIPT_SLOT for length in LENGTHS},
        generation=GenerationDefaults(max_new_tokens={"long": 200, "medium": 90, "short": 35}),
        backend_config=ExtractiveConfig(files={CONFIG: "extractive.json"}).to_dict(),
        name="extractive-baseline",
        label="extractive baseline, not a neural model",
        versions=package_versions(),
    )
    return write_manifest(out, manifest)
