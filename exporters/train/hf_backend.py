"""A Hugging Face model in memory as a runtime Backend, so training sees the runtime's input shape.

`sumctl train` needs to chapterize transcripts exactly as the exported bundle will, to run the
recursive reduce (for transcripts longer than the input) and to score the model before and after
training. Rather than re-implement any of that, it wraps the transformers model in a
`sumctl.runtime.backends.base.Backend` and hands it to the runtime's own Summarizer. The token counts
and input budgets here mirror the ONNX T5 and GGUF backends (same tokenizer, same prompt wrapping),
and the causal-LM prompt is built in exactly one place, `causal_prompt_ids` (the user turn of the
model's chat template, as runtime/backends/gguf.py renders it), which training uses too.

torch and transformers are imported by the caller; nothing here imports them at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions
from sumctl.runtime.bundle import Bundle, GenerationDefaults, Manifest
from sumctl.runtime.bundle.configs import causal_generation, seq2seq_generation_for
from sumctl.runtime.backends.gguf import MARGIN_TOKENS, PLAIN_SUFFIX
from sumctl.runtime.prompts import default_templates, fill
from sumctl.runtime.summarizer import Summarizer

SEQ2SEQ, CAUSAL = "seq2seq", "causal"


def generation_defaults(kind: str, checkpoint: Path | None) -> GenerationDefaults:
    """The generation settings the exporters write into manifests, which evaluation here reuses
    (runtime/bundle/configs.py): T5 blocks repeated 3-grams unless the checkpoint's
    generation_config.json says otherwise; a causal LM decodes greedily without n-gram blocking,
    which llama.cpp lacks. Evaluation in transformers applies no repetition penalty."""
    if kind == SEQ2SEQ:
        return seq2seq_generation_for(checkpoint)
    return causal_generation(repeat_penalty=None)


def chat_messages(user_text: str, reply: str | None = None) -> list[dict]:
    """The conversation the GGUF runtime sends: one user message holding the filled template."""
    messages = [{"role": "user", "content": user_text}]
    if reply is not None:
        messages.append({"role": "assistant", "content": reply})
    return messages


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def _with_bos(tokenizer, ids: list[int]) -> list[int]:
    # llama.cpp puts a BOS before the rendered prompt when the vocabulary asks for one and the
    # template did not write it.
    bos = tokenizer.bos_token_id
    if _adds_bos(tokenizer) and (not ids or ids[0] != bos):
        return [bos] + ids
    return ids


def causal_prompt_ids(tokenizer, user_text: str) -> list[int]:
    """Token ids of the prompt up to the model's reply, as the GGUF runtime builds it: the user
    turn of the model's chat template, or, for a model without one, the text and a cue."""
    if not getattr(tokenizer, "chat_template", None):
        return _with_bos(tokenizer, tokenizer(user_text + PLAIN_SUFFIX, add_special_tokens=False).input_ids)
    rendered = tokenizer.apply_chat_template(chat_messages(user_text), add_generation_prompt=True,
                                             tokenize=False)
    return _with_bos(tokenizer, tokenizer(rendered, add_special_tokens=False).input_ids)


def causal_reply_ids(tokenizer, user_text: str, reply: str, prompt: list[int] | None = None) -> list[int]:
    """The ids the model must produce after `causal_prompt_ids`: the reply and its end-of-turn.

    With a chat template, the template renders the whole conversation, so the reply's closing
    tokens (`<|im_end|>`, `</s>`, `<|eot_id|>`) are whatever it writes; its trailing newline
    after them is dropped, since generation stops at the end-of-turn token and never sees it.
    """
    prompt = causal_prompt_ids(tokenizer, user_text) if prompt is None else prompt
    fallback = tokenizer(reply, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    if not getattr(tokenizer, "chat_template", None):
        return fallback
    rendered = tokenizer.apply_chat_template(chat_messages(user_text, reply), tokenize=False)
    full = _with_bos(tokenizer, tokenizer(rendered, add_special_tokens=False).input_ids)
    if full[:len(prompt)] != prompt:
        return fallback  # a template that renders the prompt differently once a reply follows
    target = full[len(prompt):]
    while target and not tokenizer.decode(target[-1:]).strip():
        target.pop()
    return target


def end_of_turn_ids(tokenizer, generation_config=None) -> list[int]:
    """Token ids that end a reply: the configured end-of-sequence ids and the template's
    end-of-turn token (llama.cpp stops at all of them: its end-of-generation set)."""
    ids: set[int] = set()
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if getattr(tokenizer, "chat_template", None):
        content = tokenizer("x", add_special_tokens=False).input_ids
        tail = causal_reply_ids(tokenizer, "x", "x")[len(content):]
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
        ids.update(t for t in tail[:1] if t in special)
    return sorted(ids)


def seq2seq_prompt_ids(tokenizer, text: str) -> list[int]:
    """The encoder input: the filled template with the tokenizer's own special tokens (T5: `</s>`)."""
    return tokenizer(text).input_ids


@dataclass
class ModelShape:
    """How a model family wraps a prompt; decides token counts and input budgets."""

    kind: str  # SEQ2SEQ or CAUSAL
    tokenizer: object
    max_input_tokens: int  # T5: the encoder's input; causal LMs: the whole context (n_ctx)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def prompt_ids(self, text: str) -> list[int]:
        if self.kind == CAUSAL:
            return causal_prompt_ids(self.tokenizer, text)
        return seq2seq_prompt_ids(self.tokenizer, text)

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        overhead = len(self.prompt_ids(fill(template, "")))
        if self.kind == CAUSAL:
            # Prompt and summary share one context, and the GGUF runtime keeps a margin.
            return self.max_input_tokens - overhead - max_new_tokens - MARGIN_TOKENS
        return self.max_input_tokens - overhead


def memory_bundle(name: str, source: str, kind: str, max_input_tokens: int,
                  generation: GenerationDefaults) -> Bundle:
    """An in-memory bundle: the runtime's default prompts, the exporter's generation settings."""
    manifest = Manifest(backend=f"hf-{kind}", source={"model": source}, quantization="none",
                        max_input_tokens=max_input_tokens, prompts=default_templates(),
                        generation=generation, name=name, label="transformers model in training")
    return Bundle(Path(name), manifest)


class HFBackend(Backend):
    """A transformers model (T5 or a causal LM) behind the runtime's Backend interface."""

    name = "hf"

    def __init__(self, bundle: Bundle, model, tokenizer, shape: ModelShape):
        super().__init__(bundle)
        self.model = model
        self.tokenizer = tokenizer
        self.shape = shape
        self._stop = end_of_turn_ids(tokenizer, getattr(model, "generation_config", None)) \
            if shape.kind == CAUSAL else None

    def count_tokens(self, text: str) -> int:
        return self.shape.count_tokens(text)

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        return self.shape.input_budget(template, max_new_tokens)

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            for prompt in prompts:  # one at a time: no padding, so results match the runtime's
                ids = self.shape.prompt_ids(prompt)
                input_ids = torch.tensor([ids], device=device)
                kwargs = {"max_new_tokens": options.max_new_tokens, "num_beams": options.num_beams,
                          "no_repeat_ngram_size": options.no_repeat_ngram_size or 0,
                          "length_penalty": options.length_penalty, "do_sample": False,
                          "attention_mask": torch.ones_like(input_ids)}
                if options.repetition_penalty is not None:
                    kwargs["repetition_penalty"] = options.repetition_penalty
                if self._stop:
                    kwargs["eos_token_id"] = self._stop
                    kwargs["pad_token_id"] = self._stop[0]
                with torch.no_grad():
                    generated = self.model.generate(input_ids=input_ids, **kwargs)[0].tolist()
                if self.shape.kind == CAUSAL:
                    generated = generated[len(ids):]
                generated = [t for t in generated if t not in (self._stop or ())]
                text = self.tokenizer.decode(generated, skip_special_tokens=True).strip()
                out.append(Generation(text, len(ids), len(generated)))
        finally:
            self.model.train(was_training)
        return out


class HFSummarizer(Summarizer):
    """The runtime Summarizer (chapterization, recursive reduce) over an in-memory HF model."""

    def __init__(self, model, tokenizer, shape: ModelShape, *, name: str, source: str, length: str,
                 generation: GenerationDefaults):
        bundle = memory_bundle(name, source, shape.kind, shape.max_input_tokens, generation)
        # Training scores and reduce inputs are summary text; minutes would be found and unused.
        super().__init__(bundle, backend=HFBackend(bundle, model, tokenizer, shape), length=length,
                         minutes=False)

    @property
    def model_info(self) -> dict:
        m = self.bundle.manifest
        return {"name": m.name, "label": m.label, "path": m.source.get("model"), "backend": m.backend,
                "quantization": m.quantization, "sha256": None, "source": m.source.get("model")}


def reduce_input(summary) -> str | None:
    """The text the top-level call summarized, when the transcript took more than one round:
    the previous round's chapter summaries, one a line (what the runtime joins them into)."""
    if summary.levels <= 1:
        return None
    below = [c.summary.strip() for c in summary.chapters if c.level == summary.levels - 2]
    return "\n".join(s for s in below if s)

