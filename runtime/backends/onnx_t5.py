"""The ONNX T5 backend: an encoder and one merged KV-cache decoder, run by ONNX Runtime.

Torch-free and transformers-free on purpose: onnxruntime, tokenizers and numpy are all an edge
install carries. The decoding loops (greedy and beam search, no-repeat-ngram, length penalty)
follow transformers' `generate` step for step, so that an fp32 bundle reproduces its source
model's tokens exactly; the exporter checks this before it ships a bundle.

Why a numpy loop rather than ORT's BeamSearch contrib op: that op wants its own pair of graphs
(an "encoder_decoder_init" that also emits the cross-attention cache, and a decoder with a
fixed past layout), built by onnxruntime.transformers.convert_generation from the torch model
rather than optimum's merged decoder. Tried on onnxruntime 1.32 with a tiny T5: the converter
fuses T5's position bias into a RelativePositionBias contrib op that has no CPU kernel, so the
session cannot even be created (NOT_IMPLEMENTED) and there is nothing to time on CPU. The loop
costs little: on FLAN-T5-Large the per-step Python and numpy work (top-k over 32k logits, an
n-gram scan, and for beams a copy of the self-attention cache) takes a few milliseconds against
the 100+ ms of decoder matmuls per step measured on this 2-core machine.

Where cheap, the loop avoids copies: tensors move between steps as OrtValues bound with IO
binding (no numpy round trip), the cross-attention cache is computed once per document and
reused by every step, the first decoder step of a beam search runs once per document rather
than once per beam, and finished documents leave the batch so that they cost nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from sumctl.runtime.backends.base import Backend, Generation, GenerationOptions
from sumctl.runtime.backends.lookup import PromptLookup
from sumctl.runtime.bundle import MANIFEST_NAME, Bundle
from sumctl.runtime.bundle.configs import DECODER, ENCODER, TOKENIZER, WEIGHTS, OnnxT5Config
from sumctl.runtime.errors import BundleError, first_line
from sumctl.runtime.prompts import fill
from sumctl.runtime.backends import native_heap
from sumctl.runtime.backends.weight_pages import MappedWeights, shedding

DEFAULT_BATCH_SIZE = 4
# Prompt-lookup decoding (OnnxT5Backend(lookup=...)): at most this many drafted tokens are fed
# with each decoder step, for a batch of one input decoded greedily.
T5_LOOKUP_DRAFT = 2
# Off: it did not pay (benchmarks/perf/t5_lookup.py, 2-core AVX2 EPYC). A trained tiny T5 made
# 1.19 / 1.24 / 1.25 tokens per decoder call with drafts of 1 / 2 / 4 on held-out DialogSum,
# while a FLAN-T5-Large-sized int8 step fed 2 / 3 / 5 positions cost 1.20 / 1.24 / 1.33x one
# (int4: 1.38 / 1.62 / 2.09x), a projected 0.99x / 1.00x / 0.94x. And in int8 and int4 the
# summaries are not plain greedy's (11 and 12 of 30 identical): the dynamic activation scale
# is taken over every position fed at once.
T5_LOOKUP_DEFAULT = False
_NEG = np.float32(-1.0e9)  # transformers' "impossible" score in beam search

# transformers' clean_up_tokenization, applied when the source tokenizer had it switched on.
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class OnnxT5Backend(Backend):
    name = "onnx-t5"

    def __init__(self, bundle: Bundle, *, threads: int | None = None, batch_size: int | None = None,
                 prepack_decoder: bool = True, shed_weight_pages: bool = True, steady_heap: bool = True,
                 lookup: bool | None = None, lookup_draft: int | None = None, profile: str | None = None):
        """The defaults are the runtime's. The three switches each turn one memory or speed lever
        off, for measuring it (benchmarks/perf), never for tokens, which are the same either way:
        - prepack_decoder=False: ORT packs the decoder's weights on every call instead of once at
          load (the runtime before issue 17);
        - shed_weight_pages=False: no helper thread pages weights out while a session loads or the
          encoder runs, so a phase's pages stay resident until the phase ends (see weight_pages);
        - steady_heap=False: glibc's rising mmap threshold is left as it is (see native_heap).
        lookup: prompt-lookup decoding for greedy generation of one input at a time (see
        _greedy_lookup); None: T5_LOOKUP_DEFAULT. lookup_draft: the most tokens drafted per step;
        None: T5_LOOKUP_DRAFT. profile: ONNX Runtime's profiler on, its files named from this
        prefix (benchmarks/perf/t5_profile.py; each session's `end_profiling()` writes one)."""
        super().__init__(bundle, threads=threads)
        self.profile = profile
        self.lookup = T5_LOOKUP_DEFAULT if lookup is None else bool(lookup)
        self.lookup_draft = T5_LOOKUP_DRAFT if lookup_draft is None else max(0, int(lookup_draft))
        # What the lookup did, summed over generations: decoder steps after the first, tokens
        # drafted, drafts kept (each kept draft is a token without a decoder step of its own).
        self.lookup_counts = {"decodes": 0, "drafted": 0, "kept": 0}
        self.shed_weight_pages = shed_weight_pages
        where = bundle.path / MANIFEST_NAME
        config = OnnxT5Config.from_dict(bundle.manifest.backend_config, str(where))
        special = config.special_tokens
        self.pad_id, self.eos_id = int(special["pad"]), int(special["eos"])
        self.start_id = int(special["decoder_start"])
        self.cleanup = bool(config.clean_up_tokenization_spaces)
        self.batch_size = max(1, int(batch_size or config.batch_size or DEFAULT_BATCH_SIZE))
        tokenizer_path = bundle.file(TOKENIZER)
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as e:
            raise BundleError(f"{tokenizer_path}: not a readable tokenizer.json ({e}); re-export the model") from None
        # Chapterization already fits every input to the budget; the tokenizer must never cut one.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # The two phases keep their weights differently (see weight_pages):
        # - the encoder runs once per document on 512 rows at a time, where ORT's kernels pack
        #   each weight as they go for little cost; it reads them from the mapped weights.bin,
        #   and hands its pages back while it runs.
        # - the decoder runs once per token on one row: there, packing each weight on every call
        #   doubled the time of its matmuls, so ORT prepacks its weights once at load (an
        #   anonymous copy, about the size of the decoder's int8 weights) while the mapped
        #   originals are paged out as they are packed.
        # FLAN-T5-Large int8, 2 threads, one 512-token document, t5_speed side by side with the
        # unpacked decoder: 32.7 instead of 58.4 ms per token in one run, 41.2 instead of 43.4 in
        # another (this VM drifts), peak RSS 685 instead of 690 MB (the README has the runs).
        # int4 bundles (MatMulNBits in the decoder; their encoder is int8, see the exporter's
        # INT4_PARTS) take the same split: the decoder's 4-bit weights are packed at load (the
        # session then lets go of their weights.bin mappings: 5 left of 28 on a d_model 256 T5),
        # so no step dequantizes them.
        weights = bundle.file(WEIGHTS) if WEIGHTS in config.files else None
        # Without it the peak swung between 0.7 and 1.4 GB on identical runs (see native_heap).
        if steady_heap:
            native_heap.steady_heap()
        self.encoder, self._encoder_pages = self._load(bundle.file(ENCODER), weights, prepack=False)
        self.decoder, self._decoder_pages = self._load(bundle.file(DECODER), weights, prepack=prepack_decoder)
        self._check_decoder(where)

    # -- loading ------------------------------------------------------------------------------

    def _load(self, path, weights, *, prepack: bool) -> tuple[ort.InferenceSession, MappedWeights]:
        if weights is None:  # a bundle from before weights.bin: weights inside the graph files
            return self._session(path, prepack), MappedWeights(path, set())
        return MappedWeights.made_by(weights, lambda: self._session(path, prepack),
                                     shed_while_loading=prepack and self.shed_weight_pages)

    def _shedding(self, shed):
        return shedding(shed) if self.shed_weight_pages else contextlib.nullcontext()

    @property
    def weight_regions(self) -> dict[str, frozenset[tuple[int, int]]]:
        """The (start, end) addresses of the weights.bin mappings each session made at load, by
        phase ("encoder", "decoder"); empty for a bundle whose weights are inside its graphs.
        A copy, for measuring what of each phase is resident (benchmarks/perf/t5_memory.py)."""
        return {"encoder": frozenset(self._encoder_pages.regions),
                "decoder": frozenset(self._decoder_pages.regions)}

    def _session(self, path, prepack: bool) -> ort.InferenceSession:
        options = ort.SessionOptions()
        if self.profile:
            options.enable_profiling = True
            options.profile_file_prefix = f"{self.profile}_{Path(path).stem}"
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        # ORT's arena keeps the largest activations of every step (the first decoder step alone
        # returns a 100 MB cross-attention cache) for the life of the session: 140-380 MB more
        # peak RSS, with no measurable speed difference on these models.
        options.enable_cpu_mem_arena = False
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BundleError(f"{path}: ONNX Runtime cannot load it ({first_line(e)}); "
                              "re-export the model") from None

    def _check_decoder(self, where) -> None:
        inputs = {i.name: i for i in self.decoder.get_inputs()}
        outputs = [o.name for o in self.decoder.get_outputs()]
        needed = {"input_ids", "encoder_hidden_states", "encoder_attention_mask", "use_cache_branch"}
        if not needed <= set(inputs) or "logits" not in outputs:
            raise BundleError(f"{where}: the decoder is not a merged KV-cache T5 decoder "
                              f"(inputs: {', '.join(sorted(inputs))}); re-export with `sumctl export t5`")
        past = [n for n in inputs if n.startswith("past_key_values.")]
        self.self_past = [n for n in past if ".decoder." in n]
        self.cross_past = [n for n in past if ".encoder." in n]
        present = {n.replace("past_key_values.", "present.", 1) for n in past}
        if not self.self_past or not present <= set(outputs):
            raise BundleError(f"{where}: the decoder has no usable KV cache; re-export with `sumctl export t5`")
        shape = inputs[self.self_past[0]].shape  # (batch, heads, length, head_dim)
        self.heads, self.head_dim = int(shape[1]), int(shape[3])
        self.hidden_type = np.float16 if "float16" in inputs["encoder_hidden_states"].type else np.float32

    # -- the Backend interface ----------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def input_budget(self, template: str, max_new_tokens: int) -> int:
        # The output has its own (decoder) context in T5, so max_new_tokens does not count here.
        overhead = self.count_tokens(fill(template, ""))
        return self.bundle.manifest.max_input_tokens - overhead - 1  # 1: the </s> after the input

    def encode(self, text: str) -> list[int]:
        """Token ids as the model reads them: the text, then </s> (what T5's tokenizer does)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids + [self.eos_id]

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if self.cleanup:
            for before, after in _CLEANUP:
                text = text.replace(before, after)
        return text

    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        inputs = [self.encode(p) for p in prompts]
        outputs = self.generate_ids(inputs, max_new_tokens=options.max_new_tokens,
                                    num_beams=options.num_beams,
                                    no_repeat_ngram_size=options.no_repeat_ngram_size,
                                    length_penalty=options.length_penalty)
        return [Generation(self.decode(out), len(ids), len([t for t in out if t != self.eos_id]))
                for ids, out in zip(inputs, outputs)]

    def close(self) -> None:
        self.encoder = self.decoder = None

    # -- generation on token ids ----------------------------------------------------------------

    def generate_ids(self, inputs: list[list[int]], *, max_new_tokens: int, num_beams: int = 1,
                     no_repeat_ngram_size: int = 0, length_penalty: float = 1.0,
                     min_new_tokens: int = 0, batch_size: int | None = None) -> list[list[int]]:
        """Generated ids for each input (without the start token; ending in </s> unless cut by
        max_new_tokens). Inputs run in batches of similar length, so padding stays small."""
        if self.decoder is None:
            raise BundleError(f"{self.bundle.path}: the model was closed")
        if max_new_tokens < 1:
            return [[] for _ in inputs]
        batch_size = max(1, batch_size or self.batch_size)
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        results: list[list[int]] = [[] for _ in inputs]
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            outs = self._generate_batch([inputs[i] for i in chunk], max_new_tokens, max(1, num_beams),
                                        no_repeat_ngram_size, length_penalty, min_new_tokens)
            for i, out in zip(chunk, outs):
                results[i] = out
        return results

    def run_encoder(self, inputs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's last hidden states for a batch of token id lists, and the attention mask
        (rows padded to the longest). The first step of generate_ids; public so that the encoder
        can be timed alone. The decoder's pages of the previous batch are released first."""
        width = max(len(ids) for ids in inputs)
        ids = np.full((len(inputs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(inputs), width), dtype=np.int64)
        for row, seq in enumerate(inputs):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        self._decoder_pages.release()  # the previous batch's, before the encoder's pages come in
        encoder_pages = self._encoder_pages.clean()  # one smaps read serves the run and after it
        with self._shedding(encoder_pages.shed):
            (hidden,) = self.encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        encoder_pages.shed()
        return hidden, mask

    def _generate_batch(self, inputs, max_new_tokens, num_beams, ngram, length_penalty, min_new_tokens):
        hidden, mask = self.run_encoder(inputs)
        state = DecoderState(self, hidden, mask)
        first = np.full((len(inputs), 1), self.start_id, dtype=np.int64)
        logits = state.step(first)
        if num_beams == 1 and self.lookup and len(inputs) == 1:
            return [self._greedy_lookup(state, logits, inputs[0], max_new_tokens, ngram, min_new_tokens)]
        if num_beams == 1:
            return self._greedy(state, logits, max_new_tokens, ngram, min_new_tokens)
        return self._beam_search(state, logits, max_new_tokens, num_beams, ngram, length_penalty,
                                 min_new_tokens)

    def _greedy(self, state, logits, max_new_tokens, ngram, min_new_tokens):
        rows = np.arange(logits.shape[0])  # which input each live row belongs to
        seqs = np.full((len(rows), 1), self.start_id, dtype=np.int64)
        results: list[list[int]] = [[] for _ in rows]
        for step in range(max_new_tokens):
            _ban_repeated_ngrams(logits, seqs, ngram)
            if step < min_new_tokens:
                logits[:, self.eos_id] = -np.inf
            tokens = logits.argmax(axis=-1)
            seqs = np.concatenate([seqs, tokens[:, None]], axis=1)
            done = tokens == self.eos_id
            if step == max_new_tokens - 1:
                done[:] = True
            for i in np.flatnonzero(done):
                results[rows[i]] = seqs[i, 1:].tolist()
            if done.all():
                break
            if done.any():
                keep = np.flatnonzero(~done)
                rows, seqs, tokens = rows[keep], seqs[keep], tokens[keep]
                state.take(keep)
            logits = state.step(tokens[:, None])
        return results

    def _greedy_lookup(self, state, logits, prompt, max_new_tokens, ngram, min_new_tokens) -> list[int]:
        """_greedy for one input, with up to lookup_draft tokens drafted by prompt lookup and
        fed with each step: the decoder returns logits for every position it is fed, each one is
        chosen from as _greedy chooses (the n-gram ban over the sequence up to it, </s> held back
        before min_new_tokens, argmax), and a draft is kept while it is that choice. The first
        position where it is not gives greedy's own token, and the cache forgets the drafts after
        it. So the choice rule is plain greedy's; the numbers are the same in fp32 (1e-5 apart),
        not in dynamic int8, whose activation scale is taken over all the positions fed at once."""
        lookup = PromptLookup(prompt)
        seq = [self.start_id]  # the decoder's input so far, as _ban_repeated_ngrams sees it
        rows, draft = logits[:, None, :], []  # (1, positions, vocab); the drafts those positions checked
        while True:
            for i in range(rows.shape[1]):
                scores = rows[:, i, :]
                _ban_repeated_ngrams(scores, np.array([seq], dtype=np.int64), ngram)
                if len(seq) - 1 < min_new_tokens:
                    scores[:, self.eos_id] = -np.inf
                token = int(scores.argmax())
                seq.append(token)
                lookup.append(token)
                if token == self.eos_id or len(seq) - 1 >= max_new_tokens:
                    return seq[1:]
                if i == len(draft) or token != draft[i]:
                    break
            self.lookup_counts["kept"] += i
            state.keep_positions(len(seq) - 1)  # every token but the newest has been fed
            room = min(self.lookup_draft, max_new_tokens - len(seq))
            draft = lookup.draft(room) if room > 0 else []
            rows = state.step(np.array([[token] + draft], dtype=np.int64), every_position=True)
            self.lookup_counts["decodes"] += 1
            self.lookup_counts["drafted"] += len(draft)

    def _beam_search(self, state, logits, max_new_tokens, num_beams, ngram, length_penalty,
                     min_new_tokens):
        """transformers' beam search (early_stopping=False), one group of beams per input.

        The first step ran once per input; its logits and cache are now copied to every beam,
        and only beam 0 may start a hypothesis (the others start at -1e9), as in transformers.
        """
        batch = logits.shape[0]
        beam_rows = np.repeat(np.arange(batch), num_beams)
        # One input's beams read its cross-attention cache and encoder output as they are: the
        # decoder's cross-attention MatMuls broadcast a batch of one over the beams. Copying it
        # per beam cost 3 x 101 MB at beam 4 on FLAN-T5-Large. Several inputs need the copies.
        state.take(beam_rows, self_only=batch == 1)
        logits = logits[beam_rows]
        search = _Beams.start(batch, num_beams, self.start_id)
        results: list[list[int]] = [[] for _ in range(batch)]
        for step in range(max_new_tokens):
            cur_len = step + 1  # tokens so far, with the start token
            log_probs = _log_softmax(logits)
            _ban_repeated_ngrams(log_probs, search.seqs, ngram)
            if step < min_new_tokens:
                log_probs[:, self.eos_id] = -np.inf
            top_scores, top_beam, top_token = search.candidates(log_probs)
            hits = (top_token == self.eos_id) | (cur_len + 1 >= max_new_tokens + 1)
            search.finish(top_scores, top_beam, top_token, hits, cur_len, length_penalty)
            src_rows, new_tokens = search.advance(top_scores, top_beam, top_token, hits)
            done = search.done(cur_len, length_penalty)
            if step == max_new_tokens - 1 or hits.all():
                done[:] = True
            for g in np.flatnonzero(done):
                results[search.groups[g]] = search.best(g)
            if done.all():
                break
            if done.any():
                src_rows, new_tokens = search.drop(done, src_rows, new_tokens)
            # Beams of one input share their cross-attention cache, so only the self-attention
            # cache follows the reordering.
            state.take(src_rows, self_only=not done.any())
            logits = state.step(new_tokens.reshape(-1, 1))
        return results


@dataclass
class _Beams:
    """A beam search's state between steps, for the inputs still searching (one group each):
    their beams' sequences and scores, and each group's best finished hypotheses."""

    beams: int
    groups: np.ndarray  # which input each live group belongs to
    seqs: np.ndarray  # (groups * beams, tokens so far), the start token first
    scores: np.ndarray  # (groups, beams), float32
    finished: list[list[tuple[float, list[int]]]]  # per group: (score, tokens), best first

    @classmethod
    def start(cls, batch: int, beams: int, start_id: int) -> _Beams:
        scores = np.zeros((batch, beams), dtype=np.float32)
        scores[:, 1:] = _NEG
        return cls(beams, np.arange(batch), np.full((batch * beams, 1), start_id, dtype=np.int64), scores,
                   [[] for _ in range(batch)])

    def candidates(self, log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each group's 2 x beams best continuations, best first: (scores, beam, token). Enough
        live ones even if `beams` of them end in </s>."""
        n, beams, vocab = len(self.groups), self.beams, log_probs.shape[-1]
        k = 2 * beams
        total = (log_probs.reshape(n, beams, vocab) + self.scores[:, :, None]).reshape(n, beams * vocab)
        top = np.argpartition(-total, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(total, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        return top_scores, top // vocab, top % vocab

    def finish(self, top_scores, top_beam, top_token, hits, generated: int, length_penalty: float) -> None:
        """Keep the hypotheses that end here: only the best `beams` candidates may end, scored by
        their length (`generated`: the new token included, the start token not)."""
        beams = self.beams
        for g in range(len(self.groups)):
            for j in range(beams):
                if hits[g, j] and np.isfinite(top_scores[g, j]):
                    seq = self.seqs[g * beams + top_beam[g, j], 1:].tolist() + [int(top_token[g, j])]
                    self.finished[g].append((float(top_scores[g, j]) / generated ** length_penalty, seq))
            self.finished[g].sort(key=lambda item: -item[0])
            del self.finished[g][beams:]

    def advance(self, top_scores, top_beam, top_token, hits) -> tuple[np.ndarray, np.ndarray]:
        """Live beams: the best `beams` candidates that did not end. Returns the rows they come
        from and their new tokens (groups, beams)."""
        n, beams = len(self.groups), self.beams
        live = np.argsort(-(top_scores + hits * _NEG), axis=1, kind="stable")[:, :beams]
        src_beam = np.take_along_axis(top_beam, live, axis=1)
        new_tokens = np.take_along_axis(top_token, live, axis=1)
        self.scores = np.take_along_axis(top_scores + hits * _NEG, live, axis=1).astype(np.float32)
        src_rows = (np.arange(n)[:, None] * beams + src_beam).reshape(-1)
        self.seqs = np.concatenate([self.seqs[src_rows], new_tokens.reshape(-1, 1)], axis=1)
        return src_rows, new_tokens

    def done(self, cur_len: int, length_penalty: float) -> np.ndarray:
        """Groups whose best live beam cannot beat their worst finished hypothesis."""
        best_possible = self.scores[:, 0] / (cur_len ** length_penalty)
        return np.array([len(self.finished[g]) == self.beams and best_possible[g] <= self.finished[g][-1][0]
                         for g in range(len(self.groups))], dtype=bool)

    def best(self, g: int) -> list[int]:
        return self.finished[g][0][1] if self.finished[g] else self.seqs[g * self.beams, 1:].tolist()

    def drop(self, done: np.ndarray, src_rows: np.ndarray, new_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Leave out the groups that are done; returns src_rows and new_tokens for those kept."""
        n, beams = len(self.groups), self.beams
        keep_groups = np.flatnonzero(~done)
        self.groups, self.scores = self.groups[keep_groups], self.scores[keep_groups]
        self.finished = [self.finished[g] for g in keep_groups]
        kept_rows = (keep_groups[:, None] * beams + np.arange(beams)).reshape(-1)
        self.seqs = self.seqs[kept_rows]
        return src_rows.reshape(n, beams)[keep_groups].reshape(-1), new_tokens[keep_groups]


class DecoderState:
    """The decoder's inputs between steps: encoder output, mask, and both KV caches. Public so
    that a decoder step can be timed alone (benchmarks/perf/t5_lookup.py), as run_encoder is.

    Caches stay OrtValues that ORT allocated (bound back as the next step's inputs, no copy);
    they are only pulled into numpy to drop or reorder rows.
    """

    def __init__(self, backend: OnnxT5Backend, hidden: np.ndarray, mask: np.ndarray):
        self.backend = backend
        self.session = backend.decoder
        self.hidden = hidden.astype(backend.hidden_type, copy=False)
        self.mask = mask
        rows = hidden.shape[0]
        empty = np.zeros((rows, backend.heads, 0, backend.head_dim), dtype=backend.hidden_type)
        # An OrtValue made from a numpy array borrows its memory: the array must outlive it.
        self._arrays: dict[str, np.ndarray] = {}
        self.self_kv = {name: self._wrap(name, empty) for name in backend.self_past}
        self.cross_kv = {name: self._wrap(name, empty) for name in backend.cross_past}
        self.first = True

    def _wrap(self, name: str, array: np.ndarray) -> ort.OrtValue:
        self._arrays[name] = array
        return ort.OrtValue.ortvalue_from_numpy(array)

    def step(self, input_ids: np.ndarray, *, every_position: bool = False) -> np.ndarray:
        """Run one decoder step on (rows, positions) new tokens; returns the last position's
        logits as float32 (rows, vocab), or every position's (rows, positions, vocab)."""
        b = self.backend
        io = self.session.io_binding()
        io.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        io.bind_cpu_input("encoder_attention_mask", self.mask)
        io.bind_cpu_input("encoder_hidden_states", self.hidden)
        io.bind_cpu_input("use_cache_branch", np.array([not self.first]))
        for name in b.self_past:
            io.bind_ortvalue_input(name, self.self_kv[name])
        for name in b.cross_past:
            io.bind_ortvalue_input(name, self.cross_kv[name])
        wanted = ["logits"] + [_present(n) for n in b.self_past]
        if self.first:
            wanted += [_present(n) for n in b.cross_past]
        for name in wanted:
            io.bind_output(name, "cpu")
        self.session.run_with_iobinding(io)
        values = dict(zip(wanted, io.get_outputs()))
        for name in b.self_past:
            self.self_kv[name] = values[_present(name)]
            self._arrays.pop(name, None)
        if self.first:
            for name in b.cross_past:
                self.cross_kv[name] = values[_present(name)]
                self._arrays.pop(name, None)
            self.first = False
        logits = values["logits"].numpy()
        return np.array(logits if every_position else logits[:, -1, :], dtype=np.float32)

    def keep_positions(self, length: int) -> None:
        """Forget the self-attention cache past its first `length` positions (rejected drafts).
        The cross-attention cache does not grow with the output."""
        for name, value in self.self_kv.items():
            if value.shape()[2] > length:
                self.self_kv[name] = self._wrap(name, np.ascontiguousarray(value.numpy()[:, :, :length]))

    def take(self, rows: np.ndarray, *, self_only: bool = False) -> None:
        """Keep (or repeat, or reorder) the given rows of every per-row tensor."""
        rows = np.asarray(rows)
        if self_only and np.array_equal(rows, np.arange(len(self.mask))):
            return
        caches = [self.self_kv] if self_only else [self.self_kv, self.cross_kv]
        for cache in caches:
            for name, value in cache.items():
                cache[name] = self._wrap(name, np.ascontiguousarray(value.numpy()[rows]))
        if not self_only:
            self.hidden = np.ascontiguousarray(self.hidden[rows])
            self.mask = np.ascontiguousarray(self.mask[rows])


def _present(past_name: str) -> str:
    return past_name.replace("past_key_values.", "present.", 1)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _ban_repeated_ngrams(scores: np.ndarray, seqs: np.ndarray, n: int) -> None:
    """transformers' no_repeat_ngram_size: a token that would complete an n-gram already present
    in the row's decoder input (start token included) gets -inf."""
    length = seqs.shape[1]
    if n <= 0 or length < n:  # no complete n-gram yet
        return
    if n == 1:
        for row in range(seqs.shape[0]):
            scores[row, seqs[row]] = -np.inf
        return
    prefix = n - 1
    windows = np.lib.stride_tricks.sliding_window_view(seqs[:, :-1], prefix, axis=1)  # starts 0..L-n
    last = seqs[:, length - prefix:]
    matches = (windows == last[:, None, :]).all(axis=2)
    for row, start in zip(*np.nonzero(matches)):
        scores[row, seqs[row, start + prefix]] = -np.inf
