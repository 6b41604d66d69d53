"""Training examples for `sumctl train`: the bench JSONL -> prompts in the runtime's shape -> token ids.

Data is the bench's format (sumctl.runtime.evaluation: {id, transcript, reference}, the
transcript being text or a path in any reader format), plus an optional `length` (long, medium,
short) saying which instruction the reference answers. A record without one answers
`--default-length`.

A record may also carry labelled minutes (`decisions`, `action_items` with task, owner and due,
`open_questions`): it then adds one example that teaches the minutes prompt, with the items in
the target the runtime reads back (runtime/minutes/textformat.py: JSON for causal LMs, which
run under a grammar; the plain-text format for T5). Only whole transcripts: a meeting's items
cannot be pinned on one of its chapters.

Every example is a prompt exactly as the exported bundle will see it:
  - a transcript that fits the model's input budget (computed like the runtime: the prompt
    template, the chat template for causal LMs, and the summary's share of a causal LM's
    context) is trained on whole, with its length's template;
  - a longer one would be chapterized by the runtime, its chapters summarized, and the chapter
    summaries summarized again. The reference describes the whole meeting, which no single
    chapter does, so pairing it with a chapter would teach the model to invent. It is paired
    instead with the runtime's reduce input: the chapter summaries (one a line) that the
    Summarizer produces with the base model, through the runtime's own chapterization and
    templates. That is the input the fine-tuned model's last step will see. (`--long-inputs
    skip` leaves such records out instead.) A record may bring its own `reduce_input` (summaries
    of its parts, one a line, say written by people), which is used as it is instead: the base
    model's chapter summaries cost a generation per chapter, and a weak base writes poor ones.
For causal LMs the loss is on the reply only: prompt positions get label -100.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from sumctl.runtime.cleaning import clean_turns
from sumctl.runtime.chunking import MIN_INPUT_BUDGET, chapterize
from sumctl.exporters.errors import TrainError
from sumctl.benchmarks.eval.records import Dataset, EvalRecord, load_dataset
from sumctl.runtime.minutes.textformat import (ITEMS_MAX_NEW_TOKENS, ProposedAction, format_items,
                                               format_items_json)
from sumctl.runtime.prompts import LENGTHS, fill, minutes_template, template_for

from sumctl.exporters.train.config import LONG_INPUT_POLICIES
from sumctl.exporters.train.hf_backend import CAUSAL, ModelShape, causal_reply_ids
from sumctl.runtime.jsonout import strict_dumps

IGNORE_INDEX = -100  # the label transformers' losses skip
SUMMARY, MINUTES = "summary", "minutes"
MINUTES_FIELDS = ("decisions", "action_items", "open_questions")
MIN_EXAMPLES = 4


@dataclass
class Example:
    id: str
    line: int
    length: str
    source: str  # "transcript": the whole transcript; "reduce": the runtime's reduce input
    text: str  # what fills the template's {transcript} slot
    reference: str
    chapters: int  # chapters the runtime splits the transcript into
    query: str | None = None  # asked through the query prompt, as the runtime asks it
    task: str = SUMMARY  # or MINUTES: the reference is the record's items in the minutes target

    def to_json(self) -> str:
        return strict_dumps(asdict(self), ensure_ascii=False)


@dataclass
class Prepared:
    examples: list[Example]
    counts: dict  # what happened to the records, for the report


def load_records(path: str | Path) -> Dataset:
    """The bench JSONL, with each record's optional `length` checked."""
    dataset = load_dataset(path)
    for r in dataset.records:
        length = r.extra.get("length")
        if length is not None and length not in LENGTHS:
            raise TrainError(f"{dataset.path}:{r.line}: 'length' is {length!r}; use one of "
                             f"{', '.join(LENGTHS)} (or leave it out for --default-length)")
        minutes_fields(r, dataset.path)  # checked now, not halfway through building examples
        query = r.extra.get("query")
        if query is not None and not isinstance(query, str):
            # Not silently a plain summary: the reference answers a question the model would
            # never be asked.
            raise TrainError(f"{dataset.path}:{r.line}: 'query' is {json_kind(query)}; it must be "
                             "the question as text, or left out")
        given = r.extra.get("reduce_input")
        if given is not None and (not isinstance(given, str) or not given.strip()):
            raise TrainError(f"{dataset.path}:{r.line}: 'reduce_input' must be non-empty text (the "
                             "summaries of the transcript's parts, one a line), or left out")
    return dataset


def minutes_fields(record: EvalRecord, path) -> tuple[list, list, list] | None:
    """A record's labelled minutes, if it has any: `decisions` and `open_questions` as lists of
    text (or of {"text": ...}), `action_items` as lists of {"task", "owner"?, "due"?} (or text).
    None when the record has none of the three fields."""
    if not any(key in record.extra for key in MINUTES_FIELDS):
        return None

    def listed(key: str) -> list:
        # Only a list (or null) is a list of items: a number or `true` would be iterated into a
        # TypeError, and a string into one item per character.
        items = record.extra.get(key)
        if items is not None and not isinstance(items, list):
            raise TrainError(f"{path}:{record.line}: {key!r} is {json_kind(items)}; it must be a "
                             "list (or null); see sumctl train --help")
        return items or []

    def texts(key: str) -> list[str]:
        out = [i.get("text") if isinstance(i, dict) else i for i in listed(key)]
        if not all(isinstance(t, str) and t.strip() for t in out):
            raise TrainError(f"{path}:{record.line}: {key!r} must be a list of texts (or of "
                             "objects with a 'text'); see sumctl train --help")
        return [t.strip() for t in out]

    actions = []
    for item in listed("action_items"):
        item = {"task": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("task"), str) or not item["task"].strip() \
                or any(item.get(k) is not None and not isinstance(item.get(k), str)
                       for k in ("owner", "due", "due_text")):
            raise TrainError(f"{path}:{record.line}: each of 'action_items' needs a 'task' text, and "
                             "'owner', 'due' and 'due_text' must be text or null")
        actions.append(ProposedAction(item["task"].strip(), item.get("owner") or None,
                                      item.get("due_text") or item.get("due") or None))
    return texts("decisions"), actions, texts("open_questions")


def json_kind(value) -> str:
    """What a JSON value is, for an error that says what was found instead."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    return {str: "text", dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def minutes_reference(items: tuple[list, list, list], causal: bool) -> str:
    """The minutes target a model learns: the JSON its GGUF grammar holds it to (causal LMs,
    which sumctl runs through llama.cpp), or the plain-text format (seq2seq, e.g. T5)."""
    return format_items_json(*items) if causal else format_items(*items)


def select(dataset: Dataset, lengths: tuple[str, ...], default_length: str) -> tuple[list, dict]:
    """(record, length) pairs to train on: each record answers one instruction."""
    pairs, dropped = [], Counter()
    unlabeled = [r for r in dataset.records if r.extra.get("length") is None]
    if unlabeled and default_length not in lengths:
        raise TrainError(f"{dataset.path}:{unlabeled[0].line}: {len(unlabeled)} record(s) have no "
                         f"'length', and --default-length {default_length} is not in --lengths "
                         f"{','.join(lengths)}; add it, or label the records")
    for r in dataset.records:
        length = r.extra.get("length") or default_length
        if length in lengths:
            pairs.append((r, length))
        else:
            dropped[length] += 1
    return pairs, {f"not_in_lengths_{k}": v for k, v in dropped.items()}


Reducer = Callable[[EvalRecord, str], str]


def build_examples(dataset: Dataset, pairs: list[tuple[EvalRecord, str]], shape: ModelShape,
                   templates: dict[str, str], max_new_tokens: dict[str, int], *,
                   long_inputs: str = "reduce", reducer: Reducer | None = None,
                   progress: Callable | None = None) -> Prepared:
    """Examples in the runtime's input shape. `reducer(record, length)` returns the reduce input."""
    if long_inputs not in LONG_INPUT_POLICIES:
        raise TrainError(f"--long-inputs {long_inputs!r}: use one of {', '.join(LONG_INPUT_POLICIES)}")
    counts = Counter()
    examples, long_pairs = _summary_examples(pairs, shape, templates, max_new_tokens, long_inputs, counts)
    examples += _minutes_examples(dataset, pairs, shape, templates, counts)
    examples += _reduced_examples(dataset, long_pairs, reducer, progress, counts)
    counts.update(f"length_{e.length}" for e in examples if e.task == SUMMARY)
    return Prepared(examples, dict(counts))


def _summary_examples(pairs: list[tuple[EvalRecord, str]], shape: ModelShape, templates: dict[str, str],
                      max_new_tokens: dict[str, int], long_inputs: str, counts: Counter
                      ) -> tuple[list[Example], list[tuple[EvalRecord, str, int]]]:
    """The pairs whose input is known without a model; the rest, (record, length, chapters), to reduce."""
    examples, long_pairs = [], []
    for record, length in pairs:
        template = template_for(templates, length, record.query)
        budget = shape.input_budget(template, max_new_tokens[length])
        if budget < 8:
            raise TrainError(f"--max-input-tokens {shape.max_input_tokens} leaves {budget} tokens for "
                             f"the transcript after the {length} prompt"
                             + (f" and a {max_new_tokens[length]}-token summary" if shape.kind == CAUSAL
                                else "") + "; raise --max-input-tokens")
        # The runtime cleans transcripts before chapterizing them; the model learns on the same.
        chapters = chapterize(clean_turns(record.transcript.turns).turns, budget,
                              shape.count_tokens)
        if record.extra.get("reduce_input"):
            examples.append(Example(record.id, record.line, length, "reduce",
                                    record.extra["reduce_input"].strip(), record.reference,
                                    len(chapters), record.query))
            counts["given_reduce_input"] += 1
        elif len(chapters) == 1:
            examples.append(Example(record.id, record.line, length, "transcript",
                                    chapters[0].text(), record.reference, 1, record.query))
            counts["whole_transcript"] += 1
        elif long_inputs == "skip":
            counts["skipped_long"] += 1
        else:
            long_pairs.append((record, length, len(chapters)))
    return examples, long_pairs


def _minutes_examples(dataset: Dataset, pairs: list[tuple[EvalRecord, str]], shape: ModelShape,
                      templates: dict[str, str], counts: Counter) -> list[Example]:
    examples = []
    for record in {id(r): r for r, _ in pairs}.values():  # once per record, whatever its lengths
        items = minutes_fields(record, dataset.path)
        if items is None:
            continue
        template = minutes_template(templates, json_mode=shape.kind == CAUSAL)
        budget = shape.input_budget(template, ITEMS_MAX_NEW_TOKENS)
        if budget < MIN_INPUT_BUDGET:  # the reply alone fills a causal model's context
            counts["minutes_skipped_context"] += 1
            continue
        chapters = chapterize(clean_turns(record.transcript.turns).turns, budget, shape.count_tokens)
        if len(chapters) != 1:  # a whole meeting's items cannot be pinned on one chapter of it
            counts["minutes_skipped_long"] += 1
            continue
        examples.append(Example(record.id, record.line, "medium", "transcript", chapters[0].text(),
                                minutes_reference(items, shape.kind == CAUSAL), 1, None, MINUTES))
        counts["minutes"] += 1
    return examples


def _reduced_examples(dataset: Dataset, long_pairs: list[tuple[EvalRecord, str, int]],
                      reducer: Reducer | None, progress: Callable | None, counts: Counter) -> list[Example]:
    examples = []
    iterator = progress(long_pairs) if (progress and long_pairs) else long_pairs
    for record, length, n in iterator:
        if reducer is None:
            raise TrainError(f"{dataset.path}:{record.line}: transcript {record.id!r} is longer than "
                             "the input and no model is loaded to reduce it")
        text = reducer(record, length)
        if not text:
            counts["skipped_empty_reduce"] += 1
            continue
        examples.append(Example(record.id, record.line, length, "reduce", text, record.reference, n,
                                record.query))
        counts["reduce_input"] += 1
    return examples


def example_template(example: Example, templates: dict[str, str], causal: bool) -> str:
    if example.task == MINUTES:
        return minutes_template(templates, json_mode=causal)
    return template_for(templates, example.length, example.query)


def encode(example: Example, shape: ModelShape, templates: dict[str, str]) -> dict:
    """Token ids and labels for one example (no padding; the collator pads)."""
    tokenizer = shape.tokenizer
    prompt_text = fill(example_template(example, templates, shape.kind == CAUSAL), example.text)
    prompt = shape.prompt_ids(prompt_text)
    if shape.kind == CAUSAL:
        target = causal_reply_ids(tokenizer, prompt_text, example.reference, prompt)
        return {"input_ids": prompt + target, "attention_mask": [1] * (len(prompt) + len(target)),
                "labels": [IGNORE_INDEX] * len(prompt) + target}
    target = tokenizer(text_target=example.reference).input_ids
    return {"input_ids": prompt, "attention_mask": [1] * len(prompt), "labels": target}


def target_length(features: dict) -> int:
    return sum(1 for t in features["labels"] if t != IGNORE_INDEX)


def encode_all(examples: list[Example], shape: ModelShape, templates: dict[str, str],
               max_new_tokens: dict[str, int], data_path: Path, *, drop_overlong: bool = False
               ) -> tuple[list[dict], int]:
    """Encode every example and check it fits: the prompt in the input, the reference in the
    summary budget the runtime generates with. Returns (features, number dropped)."""
    features, overlong = [], []
    for e in examples:
        f = encode(e, shape, templates)
        prompt_len = len(f["input_ids"]) - (target_length(f) if shape.kind == CAUSAL else 0)
        if prompt_len > shape.max_input_tokens:  # chapterization makes this a bug, not bad data
            raise TrainError(f"{data_path}:{e.line}: the prompt for {e.id!r} is {prompt_len} tokens, "
                             f"over --max-input-tokens {shape.max_input_tokens}")
        # A causal reply ends with the end-of-turn token, which llama.cpp stops at without
        # counting it against the summary budget.
        limit = (ITEMS_MAX_NEW_TOKENS if e.task == MINUTES else max_new_tokens[e.length]) \
            + (1 if shape.kind == CAUSAL else 0)
        if target_length(f) > limit:
            overlong.append((e, target_length(f)))
            continue
        features.append(f)
    if overlong and not drop_overlong:
        e, n = overlong[0]
        raise TrainError(f"{data_path}:{e.line}: the reference of {e.id!r} is {n} tokens, over the "
                         f"{max_new_tokens[e.length]} a {e.length} summary may have (the runtime stops "
                         f"there); {len(overlong)} reference(s) are too long: label them with a longer "
                         "'length', shorten them, or pass --drop-overlong to leave them out")
    return features, len(overlong)


def check_enough(n: int, data_path: Path, counts: dict) -> None:
    if n < MIN_EXAMPLES:
        detail = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(counts.items()) if v)
        raise TrainError(f"{data_path}: only {n} usable training example(s) ({detail or 'none'}); "
                         f"need at least {MIN_EXAMPLES} (add records, or check --lengths)")


def save_examples(examples: list[Example], path: Path) -> None:
    from sumctl.runtime.fsutil import atomic_write_text

    atomic_write_text(path, "".join(e.to_json() + "\n" for e in examples))


def load_examples(path: Path) -> list[Example]:
    return [Example(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
