"""FLAN-T5-Large on this CPU: PyTorch fp32 against sumctl's ONNX fp32 and int8 bundles.

    python -m sumctl.benchmarks.t5_speed [--threads N] [--repeat 3] [--workdir DIR] [--keep]
    python benchmarks/t5_speed.py ...

The model is FLAN-T5-Large's architecture (google/flan-t5-large's config) with random weights:
no real weights are needed to measure speed and memory. It is exported twice with sumctl's own
exporter (fp32 and int8; the exporter's PyTorch check is skipped, it means nothing for random
weights at this size and would double the run). The workload is one document: 512 fixed input
token ids, greedy decoding forced to exactly 64 new tokens (</s> is banned until then).

Each engine runs in its own child process, so its peak RSS is its own: load, one warm-up
document, then `--repeat` timed documents (the median is reported). Printed side by side:
seconds per document, encoder seconds, peak RSS, size on disk, and ratios against PyTorch,
plus how often the ONNX engines' tokens agree with PyTorch's. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUT_TOKENS = 512
NEW_TOKENS = 64
ENGINES = ("pytorch-fp32", "onnx-fp32", "onnx-int8")


def document_ids(vocab_size: int, seed: int = 0) -> list[int]:
    """512 fixed ids: 511 ordinary tokens (ids 3+, past pad/eos/unk), then </s>."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(3, vocab_size) for _ in range(INPUT_TOKENS - 1)] + [1]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: Linux carries ru_maxrss over fork and exec,
    so a child started by a parent holding torch would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


# -- the child: one engine, one process ------------------------------------------------------------


def run_child(engine: str, model: Path, threads: int, repeat: int) -> dict:
    started = time.perf_counter()
    if engine == "pytorch-fp32":
        import torch
        from transformers import AutoModelForSeq2SeqLM

        torch.set_num_threads(threads)
        net = AutoModelForSeq2SeqLM.from_pretrained(model, torch_dtype=torch.float32).eval()
        ids = torch.tensor([document_ids(net.config.vocab_size)])
        mask = torch.ones_like(ids)

        def encode():
            with torch.inference_mode():
                net.encoder(input_ids=ids, attention_mask=mask)

        def document():
            with torch.inference_mode():
                out = net.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
            return out[0].tolist()[1:]
    else:
        from sumctl.runtime.bundle import load_bundle
        from sumctl.runtime.onnx_t5 import OnnxT5Backend

        backend = OnnxT5Backend(load_bundle(model, verify=False), threads=threads)
        doc = document_ids(backend.bundle.manifest.backend_config["decoder"]["vocab_size"])

        def encode():
            backend._encode_batch([doc])

        def document():
            return backend.generate_ids([doc], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)[0]

    load_s = time.perf_counter() - started
    tokens = document()  # warm-up: first-run allocations are not per-document cost
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        document()
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    encode()
    encoder_s = time.perf_counter() - t
    return {"engine": engine, "load_s": round(load_s, 2), "s_per_doc": round(statistics.median(times), 3),
            "runs_s": [round(x, 3) for x in times], "encoder_s": round(encoder_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "tokens": tokens}


def measure(engine: str, model: Path, threads: int, repeat: int) -> dict:
    cmd = [sys.executable, "-m", "sumctl.benchmarks.t5_speed", "--child", engine, "--model", str(model),
           "--threads", str(threads), "--repeat", str(repeat)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the parent: build, export, measure, report -----------------------------------------------------


def build(workdir: Path, small: bool) -> tuple[Path, dict]:
    from sumctl.exporters.t5_onnx import export_t5
    from sumctl.exporters.tiny_t5 import build_tiny_t5, flan_t5_large_config

    timings = {}
    checkpoint = workdir / "flan-t5-large-random"
    t = time.perf_counter()
    # The tokenizer is the tiny trained one: the workload is token ids, so it only has to exist.
    build_tiny_t5(checkpoint, config=None if small else flan_t5_large_config(), eos_logit_scale=1.0)
    timings["build_s"] = round(time.perf_counter() - t, 1)
    for quantize, name in (("none", "onnx-fp32"), ("int8", "onnx-int8")):
        t = time.perf_counter()
        export_t5(str(checkpoint), workdir / name, quantize=quantize, verify=False,
                  label="benchmark: random weights")
        timings[f"export_{name.replace('-', '_')}_s"] = round(time.perf_counter() - t, 1)
    return checkpoint, timings


def agreement(reference: list[int], tokens: list[int]) -> float:
    same = sum(a == b for a, b in zip(reference, tokens))
    return same / max(len(reference), len(tokens), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and bundles")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the checkpoint and bundles a --keep run left in --workdir")
    parser.add_argument("--small", action="store_true", help="a tiny T5 instead (checks the script)")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(args.child, args.model, args.threads, args.repeat)))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sumctl-t5-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        model = "tiny T5 (--small)" if args.small else "FLAN-T5-Large architecture, random weights"
        print(f"t5_speed: {model}; {INPUT_TOKENS} input tokens, {NEW_TOKENS} generated (greedy, fixed "
              f"length); {args.threads} threads; median of {args.repeat} after a warm-up; "
              f"load average {load_before[0]:.1f}", flush=True)
        if args.reuse:
            checkpoint, timings = workdir / "flan-t5-large-random", {"reused": str(workdir)}
            for needed in (checkpoint / "config.json", workdir / "onnx-fp32" / "sumctl.json",
                           workdir / "onnx-int8" / "sumctl.json"):
                if not needed.is_file():
                    raise SystemExit(f"--reuse: {needed} is missing (run once with --keep first)")
        else:
            checkpoint, timings = build(workdir, args.small)
        paths = {"pytorch-fp32": checkpoint, "onnx-fp32": workdir / "onnx-fp32", "onnx-int8": workdir / "onnx-int8"}
        rows = {}
        for engine in ENGINES:
            print(f"measuring {engine} ...", file=sys.stderr, flush=True)
            rows[engine] = measure(engine, paths[engine], args.threads, args.repeat)
            size = (sum(p.stat().st_size for p in checkpoint.glob("*.safetensors")) / 2**20
                    if engine == "pytorch-fp32" else folder_mb(paths[engine]))
            rows[engine]["size_mb"] = round(size, 1)
        load_after = os.getloadavg()
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(workdir, ignore_errors=True)

    base = rows["pytorch-fp32"]
    reference = base["tokens"]
    header = (f"{'engine':<14}{'s/doc':>8}{'speedup':>9}{'encoder s':>11}{'peak RSS MB':>13}{'RSS ratio':>11}"
              f"{'size MB':>10}{'size ratio':>12}{'tokens = PyTorch':>18}")
    print()
    print(header)
    print("-" * len(header))
    for engine in ENGINES:
        r = rows[engine]
        r["speedup"] = round(base["s_per_doc"] / r["s_per_doc"], 2)
        r["rss_ratio"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 2)
        r["size_ratio"] = round(r["size_mb"] / base["size_mb"], 2)
        r["agreement"] = round(agreement(reference, r["tokens"]), 4)
        print(f"{engine:<14}{r['s_per_doc']:>8.2f}{r['speedup']:>8.2f}x{r['encoder_s']:>11.2f}"
              f"{r['peak_rss_mb']:>13.0f}{r['rss_ratio']:>10.2f}x{r['size_mb']:>10.0f}{r['size_ratio']:>11.2f}x"
              f"{r['agreement']:>17.1%}")
    print()
    print(f"runs (s): " + "; ".join(f"{e} {rows[e]['runs_s']}" for e in ENGINES))
    print(f"build and export (s): {timings}; load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print("ONNX fp32 should agree 100% with PyTorch; int8's agreement on random weights is a lower bound "
          "for real ones (random logits have small margins).")
    headline = {"model": "tiny-t5" if args.small else "flan-t5-large-random", "threads": args.threads,
                "input_tokens": INPUT_TOKENS, "new_tokens": NEW_TOKENS}
    for engine in ENGINES:
        key = engine.replace("-", "_")
        r = rows[engine]
        headline.update({f"{key}_s_per_doc": r["s_per_doc"], f"{key}_peak_rss_mb": r["peak_rss_mb"],
                         f"{key}_size_mb": r["size_mb"]})
        if engine != "pytorch-fp32":
            headline.update({f"{key}_speedup_vs_pytorch": r["speedup"], f"{key}_rss_ratio_vs_pytorch": r["rss_ratio"],
                             f"{key}_size_ratio_vs_pytorch": r["size_ratio"],
                             f"{key}_token_agreement_vs_pytorch": r["agreement"]})
    headline["load_avg_before"] = round(load_before[0], 2)
    headline["load_avg_after"] = round(load_after[0], 2)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
