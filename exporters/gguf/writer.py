"""HF -> GGUF F16 with gguf-py: GGUFWriter and TensorNameMap, the Q/K rotary permutation, GQA,
rope and RMS hyperparameters, and the vocabulary (byte-level BPE or SentencePiece, with the
special tokens and the chat template)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sumctl.exporters.errors import ExportError


@dataclass
class VocabInfo:
    tokenizer_model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str
    size: int
    chat_template: bool


# --------------------------------------------------------------------------------------------
# HF -> GGUF F16


def write_gguf(model, tokenizer_dir: Path, path: Path, *, name: str = "") -> VocabInfo:
    """Write an HF Llama/Mistral model (already in memory, fp32) as GGUF F16."""
    import gguf

    config = model.config
    check_config(config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hyperparameters(writer, config, name)
    vocab = _add_vocab(writer, tokenizer_dir, config.vocab_size)
    _add_tensors(writer, model)
    write_file(writer)
    return vocab


def head_counts(config) -> tuple[int, int]:
    """(attention heads, key/value heads): the two differ under grouped-query attention."""
    n_head = config.num_attention_heads
    return n_head, getattr(config, "num_key_value_heads", None) or n_head


def write_file(writer) -> None:
    """Write out everything added to a GGUFWriter, in the order GGUF lays it out, and close it."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hyperparameters(writer, config, name: str) -> None:
    import gguf

    n_head, n_head_kv = head_counts(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer.add_name(name or config.model_type)
    writer.add_context_length(context_length(config))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    scaling = _rope_scaling(config)
    if scaling is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(scaling)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tensors(writer, model) -> None:
    import gguf
    import numpy as np

    config = model.config
    n_head, n_head_kv = head_counts(config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"{hf_name}: a tensor the llama GGUF layout has no place for "
                              f"(model_type {config.model_type!r}); this checkpoint is not plain llama")
        data = tensor.detach().to("cpu").float().numpy()
        # HF keeps each head's rotary pairs as two halves; llama.cpp's rope (the original
        # Meta layout) wants them interleaved, so the q and k rows are reordered per head.
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = interleave_rope_rows(data, n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = interleave_rope_rows(data, n_head_kv)
        data = data.astype(np.float16 if data.ndim > 1 else np.float32)
        if not np.isfinite(data).all():
            raise ExportError(f"{hf_name}: values outside the float16 range (or NaN); this "
                              "checkpoint cannot be stored as GGUF F16")
        writer.add_tensor(gguf_name, data)


def interleave_rope_rows(w, n_head: int):
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


# --------------------------------------------------------------------------------------------
# The model's configuration


def check_config(config) -> None:
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        raise ExportError(f"hidden_act {act!r} is not supported (llama GGUF uses SiLU)")
    _rope_scaling(config)


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None)  # newer transformers
    if isinstance(params, dict) and "rope_theta" in params:
        return params["rope_theta"]
    return getattr(config, "rope_theta", 10000.0)


def _rope_scaling(config) -> float | None:
    scaling = getattr(config, "rope_scaling", None) or getattr(config, "rope_parameters", None)
    if not scaling:
        return None
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return None
    if kind == "linear":
        return float(scaling["factor"])
    raise ExportError(f"rope_scaling type {kind!r} is not supported yet (supported: none, linear)")


def context_length(config) -> int:
    n_ctx = int(config.max_position_embeddings)
    window = getattr(config, "sliding_window", None)
    # llama.cpp runs Mistral as plain llama (full attention). Within one window the two are
    # identical, so the window becomes the context length rather than a silent difference.
    if getattr(config, "model_type", "") == "mistral" and window:
        n_ctx = min(n_ctx, int(window))
    return n_ctx


# --------------------------------------------------------------------------------------------
# Vocabulary


def _add_vocab(writer, tokenizer_dir: Path, vocab_size: int) -> VocabInfo:
    import gguf
    from gguf.vocab import BpeVocab, LlamaHfVocab, SentencePieceVocab

    tj = read_json(tokenizer_dir / "tokenizer.json")
    model = (tj or {}).get("model", {})
    kind = None
    if model.get("type") == "BPE" and not model.get("byte_fallback", False):
        if (tj.get("decoder") or {}).get("type") != "ByteLevel":
            raise ExportError(f"{tokenizer_dir / 'tokenizer.json'}: a BPE tokenizer without a "
                              "ByteLevel decoder is not supported")
        vocab, kind, pre = BpeVocab(tokenizer_dir), "gpt2", _bpe_pre_tokenizer(tj, tokenizer_dir)
    elif _is_sentencepiece(tokenizer_dir / "tokenizer.model"):
        vocab, kind, pre = SentencePieceVocab(tokenizer_dir), "llama", "default"
    elif model.get("type") == "BPE" and model.get("byte_fallback"):
        _check_byte_tokens(tj, tokenizer_dir / "tokenizer.json")
        vocab, kind, pre = LlamaHfVocab(tokenizer_dir), "llama", "default"
    if kind is None:
        found = model.get("type") or ("none" if tj is None else "unknown")
        raise ExportError(f"{tokenizer_dir}: tokenizer type {found!r} is not supported (need a "
                          "byte-level BPE tokenizer.json or a SentencePiece tokenizer.model)")

    tokens, scores, types = [], [], []
    for text, score, toktype in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(toktype)
    if isinstance(vocab, LlamaHfVocab):
        scores = merge_rank_scores(model.get("merges") or [], tokens, types)
    if kind == "gpt2" and tj:
        # BpeVocab keeps added tokens that are already in the base vocab (SmolLM's
        # <|im_start|>, <|im_end|>) as NORMAL; llama.cpp would then split them into pieces
        # inside a chat prompt. tokenizer.json says which of them are special.
        for added in tj.get("added_tokens", []):
            i = added.get("id")
            if isinstance(i, int) and i < len(types):
                types[i] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    if len(tokens) > vocab_size:
        raise ExportError(f"{tokenizer_dir}: the tokenizer has {len(tokens)} tokens but the model's "
                          f"embedding has only {vocab_size} rows")
    for i in range(len(tokens), vocab_size):  # embedding rows padded past the tokenizer
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)

    writer.add_tokenizer_model(kind)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if kind == "llama":
        writer.add_token_scores(scores)
    writer.add_token_types(types)

    special = gguf.SpecialVocab(tokenizer_dir, load_merges=(kind == "gpt2"), n_vocab=len(tokens))
    if "bos" not in special.add_special_token or "eos" not in special.add_special_token:
        add_bos, add_eos = _hf_adds_special(tokenizer_dir)
        special.add_special_token.setdefault("bos", add_bos)
        special.add_special_token.setdefault("eos", add_eos)
    special.add_to_gguf(writer, quiet=True)
    return VocabInfo(kind, pre, len(tokens), bool(special.chat_template))


def merge_rank_scores(merges: list, tokens: list, types: list) -> list[float]:
    """Token scores for a byte-fallback BPE written as a llama (SentencePiece) vocabulary.

    llama.cpp merges, among adjacent pairs whose concatenation is a token, the one whose token
    scores highest; the BPE merges the pair of lowest rank. Scoring each token minus the rank of
    the first merge that makes it replays the BPE's order. gguf's LlamaHfVocab scores every token
    -1000, and llama.cpp then merges left to right: other splits than the model was trained on.
    """
    import gguf

    first: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge if isinstance(merge, (list, tuple)) else merge.split(" ", 1)
        first.setdefault(left + right, rank)
    scores = []
    for token, toktype in zip(tokens, types):
        text = token.decode("utf-8") if isinstance(token, bytes) else token
        if toktype == gguf.TokenType.NORMAL:
            scores.append(-float(first.get(text, len(merges))))
        else:  # bytes, control and user-defined tokens are never a merge's result
            scores.append(0.0 if toktype == gguf.TokenType.BYTE else -1000.0)
    return scores


def _check_byte_tokens(tj: dict, where: Path) -> None:
    """A byte-fallback BPE becomes a llama (SentencePiece-style) vocabulary in GGUF, and
    llama.cpp then looks up `<0x00>`...`<0xFF>` for every byte it cannot match: a vocabulary
    without them aborts llama.cpp (std::out_of_range in byte_to_token). transformers' own GGUF
    import writes exactly such a tokenizer.json for byte-level models (SmolLM2, GPT-2)."""
    vocab = (tj.get("model") or {}).get("vocab") or {}
    present = set(vocab) if isinstance(vocab, dict) else set()
    present.update(t.get("content") for t in tj.get("added_tokens", []) if isinstance(t, dict))
    missing = [b for b in range(256) if f"<0x{b:02X}>" not in present]
    if not missing:
        return
    byte_level = (tj.get("decoder") or {}).get("type") == "ByteLevel"
    fix = ('it is a byte-level BPE (ByteLevel decoder): set "byte_fallback": false in its '
           '"model" section, or take tokenizer.json from the original checkpoint'
           if byte_level else "add the 256 <0xNN> byte tokens, or take tokenizer.json from the "
           "original checkpoint")
    raise ExportError(f"{where}: says byte_fallback but lacks {len(missing)} of the 256 byte "
                      f"tokens (<0x{missing[0]:02X}>...) that llama.cpp needs; {fix}")


# Pre-tokenizers llama.cpp implements, recognised by their tokenizer.json shape.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _bpe_pre_tokenizer(tj: dict, where: Path) -> str:
    pre = tj.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    shape = [p.get("type") for p in parts]
    if shape == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt2"
    if (shape == ["Digits", "ByteLevel"] and parts[0].get("individual_digits")
            and parts[1].get("use_regex", True)):
        return "smollm"
    if (shape == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True)
            and (parts[0].get("pattern") or {}).get("Regex") == _LLAMA3_SPLIT):
        return "llama-bpe"
    raise ExportError(f"{where / 'tokenizer.json'}: pre-tokenizer {'+'.join(map(str, shape)) or 'none'} "
                      "has no llama.cpp equivalent sumctl knows (supported: gpt2, smollm, llama-bpe)")


def _is_sentencepiece(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":  # transformers' GGUF import saves the GGUF itself under this name
            return False
    try:
        from sentencepiece import SentencePieceProcessor

        SentencePieceProcessor().LoadFromFile(str(path))
        return True
    except Exception:
        return False


def _hf_adds_special(tokenizer_dir: Path) -> tuple[bool, bool]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    ids = tok("a", add_special_tokens=True).input_ids
    bare = tok("a", add_special_tokens=False).input_ids
    add_bos = tok.bos_token_id is not None and len(ids) > len(bare) and ids[0] == tok.bos_token_id
    add_eos = tok.eos_token_id is not None and len(ids) > len(bare) and ids[-1] == tok.eos_token_id
    return add_bos, add_eos


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: unreadable ({e})") from None
