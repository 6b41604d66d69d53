"""The GGUF backend: LLaMA-family and Gemma 3 models through llama.cpp (llama-cpp-python), no torch.

The prompt is the bundle's template for the summary length, filled with the transcript and sent
as the user turn of the model's own chat template (read from the GGUF metadata); a model without
one (a pretrained base such as Gemma-3-270M) gets the plain prompt and a cue. Decoding is
greedy with a fixed seed, so a summary is reproducible. The context size comes from the model
(its training context, capped: a KV cache for 8k tokens is already larger than a 135M model).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions
from sumctl.runtime.backends.lookup import PromptLookup
from sumctl.runtime.bundle import MANIFEST_NAME, Bundle, load_bundle, package_versions, write_manifest
from sumctl.runtime.bundle.configs import ADAPTER, MODEL, N_CTX_CAP, GgufConfig, gguf_manifest
from sumctl.runtime.errors import BundleError, SumctlError
from sumctl.runtime.machine import plan_openmp_waits, usable_cores
from sumctl.runtime.prompts import fill

N_CTX_ENV = "SUMCTL_GGUF_N_CTX"  # overrides the cap, e.g. to save memory on small machines
# Tokens kept free besides the prompt and the summary, so a template that renders slightly
# differently around a real transcript (a merged space, a newline) still fits.
MARGIN_TOKENS = 16
# A JSON string's character in GBNF, as llama-cpp-python writes it and as JSON allows it.
_LOOSE_JSON_CHAR = 'char ::= [^"\\\\]'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'
# Without a chat template (a base model) the instruction and transcript are followed by this cue.
PLAIN_SUFFIX = "\n\nSummary:\n"
# The GGUF architectures a bundle may hold: those whose summaries and LoRA adapters have been
# checked through this backend (tests/runtime/backends/test_gemma3_bundle.py for gemma3).
# llama.cpp loads many more, but an unchecked one would fail at the first summary, not here.
GGUF_ARCHITECTURES = ("llama", "gemma3")
# Prompt-lookup decoding (GgufBackend(lookup=...)): at most this many tokens drafted per step
# (lookup.PromptLookup).
LOOKUP_DRAFT = 8
# Off: llama.cpp's batch of drafts gives logits unlike one-token decodes' after its first row
# (up to 0.4-0.6 apart), so a near-tied greedy choice can flip and the summary differ from plain decoding's
# (the merged Q8_0 default: standup and 2 QMSum segments all differed, from token 2 to 24), and
# few drafts are kept (1-11%), so on 2 CPU threads it did not decode faster.
LOOKUP_DEFAULT = False


def prepare_llama_cpp(*, threads: int | None = None) -> None:
    """Set llama.cpp's OpenMP wait policy for one model on `threads` (machine.plan_openmp_waits);
    call it before the first OpenMP runtime starts (llama.cpp's, or torch's where one process
    holds both), since OpenMP reads it once. A watcher or batch that runs several models at once
    plans for all of them first (plan_openmp_waits with its workers); this call then changes
    nothing."""
    plan_openmp_waits(1, threads or usable_cores())


def import_llama_cpp(*, threads: int | None = None):
    """llama-cpp-python, imported with the wait policy above in place."""
    prepare_llama_cpp(threads=threads)
    import llama_cpp

    return llama_cpp


class GgufBackend(Backend):
    name = "gguf"
    constrains_json = True
    retries_each_at_once = True  # the retry reuses all but the last batch of its prompt (_rewind_to_cached)
    minutes_method = "cues"  # measured: benchmarks/perf/minutes_quality.py

    def __init__(self, bundle: Bundle, *, threads: int | None = None, n_ctx: int | None = None,
                 lookup: bool | None = None):
        """lookup: prompt-lookup (speculative) decoding for greedy summaries without a grammar
        (see _generate_lookup); None: LOOKUP_DEFAULT. Sampling (a temperature above 0) and JSON
        grammars always decode plainly."""
        super().__init__(bundle, threads=threads)
        self.lookup = LOOKUP_DEFAULT if lookup is None else bool(lookup)
        n_threads = threads or usable_cores()
        try:
            llama_cpp = import_llama_cpp(threads=n_threads)
        except ImportError:
            raise BundleError(f"{bundle.path}: GGUF models need llama-cpp-python "
                              "(pip install llama-cpp-python)") from None
        config = GgufConfig.from_dict(bundle.manifest.backend_config, str(bundle.path / MANIFEST_NAME))
        defaults = bundle.manifest.generation
        path = bundle.file(MODEL)
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle (re-export or copy the whole folder)")
        self.seed = defaults.seed
        self.repetition_penalty = defaults.repetition_penalty
        self.temperature = defaults.temperature
        n_ctx_train = config.n_ctx_train or read_metadata(path).get("n_ctx_train") or N_CTX_CAP
        n_ctx = n_ctx or _env_int(N_CTX_ENV) or min(int(n_ctx_train), config.n_ctx_cap)
        # A LoRA adapter GGUF (the embedded default's fine-tuning) is applied by llama.cpp at load.
        adapter = bundle.file(ADAPTER) if ADAPTER in config.files else None
        if adapter is not None and not adapter.is_file():
            raise BundleError(f"{adapter}: missing from the bundle (re-export or copy the whole folder)")
        quiet_llama_cpp()
        try:
            self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx),
                                       n_threads=n_threads, n_threads_batch=n_threads,
                                       flash_attn=bool(config.flash_attention),
                                       seed=self.seed, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise BundleError(f"{path}: llama.cpp cannot load this GGUF ({e}); the file is corrupt "
                              "or from an incompatible llama.cpp version; re-export the model") from None
        if adapter is not None:
            self._apply_adapter(adapter, float(config.adapter_scale or 1.0))
        self.n_ctx = self.llm.n_ctx()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos = self.llm.token_bos()
        self._formatter = self._chat_formatter(llama_cpp)
        self._overhead: dict[str, int] = {}
        self._grammars: dict[str, object] = {}
        self._batch = None  # the lookup's verification batch, made on first use
        # The prompt the KV cache holds (_rewind_to_cached); its tokens evaluated, and reused.
        self._prompt_in_cache: list[int] | None = None
        self.prompt_counts = {"evaluated": 0, "reused": 0}
        # What the lookup did, summed over generations: decodes after the prompt's, tokens
        # drafted, drafts kept (each kept draft is a token without a decode of its own).
        self.lookup_counts = {"decodes": 0, "drafted": 0, "kept": 0}

    def _chat_formatter(self, llama_cpp):
        """The GGUF's own chat template, rendered as llama-cpp-python renders it; None for a base
        model without one."""
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8") if token >= 0 else ""

        return Jinja2ChatFormatter(template=template, eos_token=text(self.llm.token_eos()),
                                   bos_token=text(self._bos), add_generation_prompt=True)

    def _apply_adapter(self, adapter: Path, scale: float) -> None:
        """Load the LoRA GGUF onto the model and set it on the context. Llama(lora_path=...) would
        do the same but turns off mmap, so that each worker process would hold its own copy of
        the base weights instead of sharing the page cache's."""
        import ctypes

        import llama_cpp

        handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(adapter).encode("utf-8"))
        ok = bool(handle)
        if ok:  # freed with the model, when the Llama closes
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            ok = llama_cpp.llama_set_adapters_lora(self.llm.ctx, handles, 1, (ctypes.c_float * 1)(scale)) == 0
        if not ok:
            self.close()
            raise BundleError(f"{adapter}: llama.cpp cannot load this LoRA adapter GGUF; the file is "
                              "corrupt, not made for this model, or from an incompatible llama.cpp "
                              "version; reinstall or re-export it")

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        if template not in self._overhead:
            self._overhead[template] = len(self.prompt_tokens(fill(template, "")))
        return self.n_ctx - max_new_tokens - self._overhead[template] - MARGIN_TOKENS

    def render(self, prompt: str) -> str:
        """The text llama.cpp sees: the prompt inside the model's chat template."""
        if self._formatter is None:
            return prompt + PLAIN_SUFFIX
        try:
            return self._formatter(messages=[{"role": "user", "content": prompt}]).prompt
        except Exception as e:  # a template that raises on a plain user turn
            raise BundleError(f"{self.bundle.path}: the model's chat template failed ({e})") from None

    def prompt_tokens(self, prompt: str) -> list[int]:
        rendered = self.render(prompt)
        # Special tokens in the template (<|im_start|>) are parsed as such; the transcript
        # inside it is user text, but a transcript that spells a control token is rare enough
        # that one tokenization pass is the better trade.
        tokens = self.llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        if self._add_bos and self._bos >= 0 and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        if options.num_beams > 1:
            raise SumctlError(f"{self.bundle.path}: GGUF models decode greedily; beam search "
                              f"({options.num_beams} beams) is not supported (use --beams 1)")
        return [self._generate_one(p, options) for p in prompts]

    def _generate_one(self, prompt: str, options: GenerationOptions) -> Generation:
        import llama_cpp

        max_new_tokens = options.max_new_tokens
        tokens = self.prompt_tokens(prompt)
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise SumctlError(f"{self.bundle.path}: the prompt needs {len(tokens)} tokens but the "
                              f"context holds {self.n_ctx}; lower the input budget")
        limit = min(max_new_tokens, room)
        out: list[int] = []
        self.llm.set_seed(self.seed)
        penalty = options.repetition_penalty or self.repetition_penalty
        if self.uses_lookup(options):
            out = self._generate_lookup(tokens, limit, penalty, options.no_repeat_ngram_size)
            text = self.llm.detokenize(out, special=False).decode("utf-8", errors="replace")
            return Generation(text.strip(), len(tokens), len(out))
        processors = (llama_cpp.LogitsProcessorList([_NoRepeatNgram(options.no_repeat_ngram_size,
                                                                    len(tokens))])
                      if options.no_repeat_ngram_size > 0 else None)
        for token in self.llm.generate(tokens[self._rewind_to_cached(tokens):], temp=self.temperature,
                                       top_k=1 if self.temperature == 0 else 40,
                                       repeat_penalty=penalty, reset=False,
                                       logits_processor=processors,
                                       grammar=self._grammar(options.json_schema)):
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            out.append(token)
            if len(out) >= limit:
                break
        text = self.llm.detokenize(out, special=False).decode("utf-8", errors="replace")
        return Generation(text.strip(), len(tokens), len(out))

    def _rewind_to_cached(self, tokens: list[int]) -> int:
        """Where the evaluation of `tokens` starts: 0, a full evaluation, unless they are the prompt
        the KV cache already holds (a retry of a degenerate summary, with other decoding settings).
        Then every batch but the last is kept and the last is evaluated again, exactly as before:
        llama.cpp cuts a prompt into n_batch-token batches from its start, so the kept cache and
        the replayed batch are those of a full evaluation, bit for bit, and so are the logits the
        summary starts from. Reusing the whole prompt instead would replay its last token alone,
        through other kernels than the prompt batch, and could flip a near-tied greedy choice."""
        import llama_cpp

        keep = 0
        if tokens == self._prompt_in_cache:
            keep = (len(tokens) - 1) // self.llm.n_batch * self.llm.n_batch
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.llm.ctx), -1, keep, -1)
        self.llm.n_tokens = keep
        self._prompt_in_cache = tokens
        self.prompt_counts["evaluated"] += len(tokens) - keep
        self.prompt_counts["reused"] += keep
        return keep

    def uses_lookup(self, options: GenerationOptions) -> bool:
        """Whether a generation with these options drafts by prompt lookup: only when asked
        for, greedy and without a grammar (whose state a rejected draft would have to undo)."""
        return self.lookup and self.temperature == 0 and options.json_schema is None

    def _generate_lookup(self, tokens: list[int], limit: int, penalty: float, no_repeat: int) -> list[int]:
        """Greedy decoding that drafts up to LOOKUP_DRAFT tokens per step by prompt lookup and
        checks them all in one llama.cpp decode with logits for every position. Each position's
        token is chosen as llama-cpp-python's generate() chooses it, by the same sampler chain
        (the no-repeat n-gram ban written into that position's logits first, as its logits
        processor would, then the penalties sampler over the tokens chosen so far, then greedy),
        so a draft is kept while it is what greedy picks, and the first position where it is not
        gives greedy's own token. The prompt is evaluated as generate() evaluates it. The choice
        rule is plain decoding's, not the numbers: after its first row, a batch decode's logits
        differ from one-token decodes' of the same tokens (by up to 0.4-0.6 on the merged Q8_0
        default, with or without flash attention), enough to flip a near tie (LOOKUP_DEFAULT)."""
        import llama_cpp

        llm, ctx = self.llm, self.llm.ctx
        # Llama._init_sampler's chain at temperature 0, through the same binding and arguments.
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(
            llm.n_vocab(), llm.last_n_tokens_size, penalty, 0.0, 0.0))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        lookup = PromptLookup(tokens)
        out: list[int] = []
        try:
            llm.eval(tokens[self._rewind_to_cached(tokens):])
            n_past = len(tokens)  # positions in the KV cache
            rows, draft = [-1], []  # the last decode's logits rows; the drafts it fed
            while True:
                for i, row in enumerate(rows):
                    if no_repeat > 0:
                        _ban(llama_cpp.llama_get_logits_ith(ctx, row), _banned(out, no_repeat))
                    token = llama_cpp.llama_sampler_sample(chain, ctx, row)
                    if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                        return out
                    out.append(token)
                    lookup.append(token)
                    if len(out) >= limit:
                        return out
                    if i == len(draft) or token != draft[i]:
                        break
                n_past += i  # the drafts kept; `token`, the newest, is not evaluated yet
                self.lookup_counts["kept"] += i
                llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), -1, n_past, -1)
                room = min(LOOKUP_DRAFT, limit - len(out) - 1, self.n_ctx - n_past - 1)
                draft = lookup.draft(room) if room > 0 else []
                step = [token] + draft
                self._decode_with_logits(step, n_past)
                n_past += 1
                rows = range(len(step))
                self.lookup_counts["decodes"] += 1
                self.lookup_counts["drafted"] += len(draft)
        finally:
            llama_cpp.llama_sampler_free(chain)

    def _decode_with_logits(self, step: list[int], n_past: int) -> None:
        """One llama.cpp decode of `step` at positions n_past..., with logits at every position."""
        import llama_cpp

        if self._batch is None:
            self._batch = llama_cpp.llama_batch_init(LOOKUP_DRAFT + 1, 0, 1)
        batch = self._batch
        batch.n_tokens = len(step)
        for j, t in enumerate(step):
            batch.token[j] = t
            batch.pos[j] = n_past + j
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = True
        if llama_cpp.llama_decode(self.llm.ctx, batch) != 0:
            raise SumctlError(f"{self.bundle.path}: llama.cpp failed to decode "
                              f"{len(step)} tokens at position {n_past}")

    def _grammar(self, schema: str | None):
        """llama.cpp's grammar for a JSON Schema, built once per schema: decoding under it can
        only produce JSON of that shape, whatever the model would rather say."""
        if schema is None:
            return None
        if schema not in self._grammars:
            from llama_cpp import LlamaGrammar
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                gbnf = json_schema_to_gbnf(schema)
                # llama-cpp-python's port lets a string hold raw control characters (a newline),
                # which no JSON parser accepts; llama.cpp's own converter excludes them.
                self._grammars[schema] = LlamaGrammar.from_string(
                    gbnf.replace(_LOOSE_JSON_CHAR, _JSON_CHAR), verbose=False)
            except (ValueError, RuntimeError) as e:
                raise SumctlError(f"{self.bundle.path}: llama.cpp cannot build a grammar for this "
                                  f"JSON Schema ({e})") from None
        return self._grammars[schema]

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


class _NoRepeatNgram:
    """transformers' no_repeat_ngram_size for llama.cpp, over the generated tokens only (the
    prompt's n-grams stay allowed: a summary may quote a name). llama.cpp has no such sampler,
    and the retry of a looping summary needs one."""

    def __init__(self, n: int, prompt_length: int):
        self.n = n
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores):
        for token in _banned(list(input_ids[self.prompt_length:]), self.n):
            scores[token] = -float("inf")
        return scores


def _banned(generated: list[int], n: int) -> list[int]:
    """The tokens that would repeat an n-gram of `generated` after its last n-1 tokens."""
    banned = []
    if len(generated) >= n - 1:
        prefix = tuple(generated[len(generated) - n + 1:]) if n > 1 else ()
        for i in range(len(generated) - n + 1):
            if tuple(generated[i:i + n - 1]) == prefix:
                banned.append(generated[i + n - 1])
    return banned


def _ban(logits, tokens: list[int]) -> None:
    """-inf for these tokens in a llama.cpp logits row (a float pointer), as _NoRepeatNgram sets
    them in the sampler's copy of it."""
    for token in tokens:
        logits[token] = -float("inf")


def read_metadata(path: Path) -> dict:
    """What a manifest records about a GGUF, read by llama.cpp itself (vocabulary only, fast)."""
    import ctypes

    llama_cpp = import_llama_cpp()

    quiet_llama_cpp()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise BundleError(f"{path}: llama.cpp cannot load this GGUF; the file is corrupt or from "
                          "an incompatible llama.cpp version")
    try:
        def meta(key: str) -> str | None:
            size = llama_cpp.llama_model_meta_val_str(model, key.encode(), None, 0)
            if size < 0:
                return None
            buf = ctypes.create_string_buffer(size + 1)
            llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, size + 1)
            return buf.value.decode("utf-8", errors="replace")

        arch = meta("general.architecture") or ""
        vocab = llama_cpp.llama_model_get_vocab(model)
        return {"architecture": arch,
                "n_ctx_train": int(meta(f"{arch}.context_length") or 0) or None,
                "chat_template": meta("tokenizer.chat_template") is not None,
                "tokenizer": {"model": meta("tokenizer.ggml.model"), "pre": meta("tokenizer.ggml.pre"),
                              "size": llama_cpp.llama_vocab_n_tokens(vocab)},
                "name": meta("general.name") or ""}
    finally:
        llama_cpp.llama_model_free(model)


def build_gguf_bundle(gguf_file: Path, out: Path, *, name: str, label: str, quantization: str,
                      source: dict, verification: dict | None = None, link: bool = True,
                      adapter: Path | None = None, chapter_tokens: int | None = None,
                      flash_attention: bool = False) -> Bundle:
    """A bundle around an existing GGUF file (hard-linked where possible, else copied), and a
    llama.cpp LoRA adapter GGUF to apply to it (copied: it is small), if given; chapter_tokens
    as GenerationDefaults has it; flash_attention as GgufConfig has it (written only when on).

    Built in a temporary folder beside `out` and renamed into place, so a crash or a second
    process building the same bundle never leaves a half-made one.
    """
    gguf_file, out = Path(gguf_file), Path(out)
    meta = read_metadata(gguf_file)
    if meta["architecture"] not in GGUF_ARCHITECTURES:
        raise BundleError(f"{gguf_file}: architecture {meta['architecture']!r} is not supported "
                          f"by the gguf backend ({', '.join(GGUF_ARCHITECTURES)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would follow the bundle to its final name
    try:
        target = tmp / gguf_file.name
        try:
            if not link:
                raise OSError
            os.link(gguf_file, target)
        except OSError:
            shutil.copyfile(gguf_file, target)
        adapter_file = None
        if adapter is not None:
            shutil.copyfile(adapter, tmp / Path(adapter).name)
            adapter_file = Path(adapter).name
        manifest = gguf_manifest(
            model_file=target.name, adapter_file=adapter_file, quantization=quantization,
            n_ctx_train=meta["n_ctx_train"] or N_CTX_CAP, source=source, name=name, label=label,
            chat_template=meta["chat_template"], tokenizer=meta["tokenizer"],
            verification=verification, versions=package_versions("llama-cpp-python"),
            chapter_tokens=chapter_tokens, flash_attention=True if flash_attention else None)
        write_manifest(tmp, manifest)
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / MANIFEST_NAME).is_file():  # not a concurrent build that won the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(out)


# llama.cpp's log callback while sumctl runs it (kept referenced: ctypes would free it).
_SILENT_LOG = None


def quiet_llama_cpp() -> None:
    """Silence llama.cpp's log for the rest of the process. llama-cpp-python prints it to
    sys.stderr for levels at or above its logger's; its level table predates ggml's renumbering
    and reads WARN as ERROR, and every Llama(verbose=False) sets the logger back to ERROR before
    loading, so llama.cpp's warnings reached the user (one per adapted tensor where a LoRA meets
    repacked Q4_0 weights; Gemma 3's "using full-size SWA cache" at every load). Its callback is
    replaced, once, by one that prints nothing. Failures still reach the user, as this package's
    one-line errors."""
    global _SILENT_LOG
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL + 1)
    if _SILENT_LOG is None:
        import ctypes

        import llama_cpp

        _SILENT_LOG = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_SILENT_LOG, ctypes.c_void_p(0))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise SumctlError(f"${name}={value!r} is not a whole number of tokens") from None
    if n < 64:
        raise SumctlError(f"${name}={n} is too small (at least 64 tokens)")
    return n
