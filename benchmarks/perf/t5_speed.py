"""FLAN-T5-Large on this CPU: PyTorch fp32, sumctl's ONNX fp32, int8, int8-block and int4 bundles
(with and without the fused decoder attention), and CTranslate2 int8.

    python -m sumctl.benchmarks.perf.t5_speed [--threads N] [--repeat 3] [--engines a,b,...]
                                         [--beams 4 | --no-beam] [--batches 1,4,8]
                                         [--workdir DIR] [--keep | --reuse] [--small]
    python benchmarks/t5_speed.py ...

The model is FLAN-T5-Large's architecture (google/flan-t5-large's config) with random weights:
no real weights are needed to measure speed and memory. It is exported with sumctl's own
exporter (fp32, int8, int8-block and int4, as the engines need; the exporter's PyTorch check is skipped, it
means nothing for random weights at this size and would double the run), and converted once with
CTranslate2's own converter (int8), the specialist peer to beat. The workload is one document: 512 fixed input
token ids, decoding forced to exactly 64 new tokens (</s> is banned until then).

Each measurement runs in its own child process, so its peak RSS is its own: load, one warm-up,
then `--repeat` timed calls (the median is reported). Measured in one run:

- greedy, one document, every engine in `--engines` (default all): seconds per document, encoder
  seconds (the median of one encoder call before each timed document), peak RSS, size on disk, ratios against PyTorch, and how often the tokens agree with
  the fp32 reference (PyTorch; ONNX fp32 when PyTorch is not run). CTranslate2 has no encoder-only
  call, so its encoder figure is a run with max_decoding_length=1 (it includes one decode step).
- peak RSS as a distribution: one process's peak is one draw (the same int8 run has read 0.7 and
  1.3 GB), so each engine's greedy measurement is followed by `--memory-runs` - 1 more fresh
  processes (load, warm-up, one document). The table gives min, median and max; the ratios and
  the JSON's `<engine>_peak_rss_mb` use the max, the worst case a user must plan for.
- onnx-int8 against ct2-int8: latency, peak RSS and size ratios (ours / CTranslate2; the targets
  are <= 0.6, <= 1.0 and <= 1.0), and the latency ratio with beam search; onnx-int4 (issue 30's
  4-bit weights) against ct2-int8 the same way, greedy only, with issue 30's targets (<= 0.45,
  <= 0.6, <= 0.6). Beam search, batching and the decode floor are onnx-int8's alone for now.
- decoding per token, (s/doc - encoder s) / 64, against the memory-bandwidth floor: the bytes a
  greedy step must read, at the read rate of kit.read_bandwidth_gbs with `--threads` threads
  (median over its passes, measured in the same run); the target is <= 1.5x issue 17's floor.
- beam search (`--beams`, default 4; `--no-beam` skips it) for onnx-int8 and ct2-int8, with the
  tokens' agreement against the fp32 reference's own beam search (one untimed reference run).
- batching (`--batches`, default 1,4,8; `--batches 1` skips it): documents per minute for
  onnx-int8 and ct2-int8 when B distinct documents (seeds 0..B-1) go in one call, and the gain
  over batch 1 (the greedy row). Agreement is that of the first document.

- decoding per token of every quantized bundle against the floor of what its own greedy step
  reads: the stored bytes of the weights its decoder's cache branch uses (int4 blocks with their
  scales, int8, fp32 norms) and the fp32 cross-attention cache; issue 30's target is <= 1.5x.

`onnx-int8-unpacked` (not run by default) is the same int8 bundle with no weight prepacked, as
the runtime ran it before issue 17: to measure that lever side by side. `onnx-int8-unfused` and
`onnx-int4-unfused` (not run by default) are exported with `fuse_attention=False`, as bundles
were before issue 30's fused decoder attention: that lever, side by side. `onnx-int4-b128` (not
run by default) is int4 exported with `--int4-block 128` instead of 32.

Ratios that need an engine left out of `--engines` are omitted. CTranslate2 is a benchmark peer
only (the `bench` extra); without it its rows are skipped, and the run says so. The last line is
one JSON object.
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

from sumctl.benchmarks.eval.memory import peak_distribution, peak_rss_mb
from sumctl.benchmarks.perf.kit import bandwidth_method, print_headline, read_bandwidth_gbs, run_in_child
from sumctl.runtime.jsonout import strict_dumps

INPUT_TOKENS = 512
NEW_TOKENS = 64
ENGINES = ("pytorch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-block", "onnx-int4", "onnx-int4-b128",
           "onnx-int8-unpacked", "onnx-int8-unfused", "onnx-int4-unfused", "ct2-int8")
PEERS = ("onnx-int8", "ct2-int8")  # the engines measured with beam search and batching
LABELS = {"pytorch-fp32": "PyTorch", "onnx-fp32": "ONNX fp32"}
# The int8 bundle run as the runtime did before issue 17: no weight prepacked, the decoder's
# packed by ORT on every call (the lever's effect, measured side by side).
UNPACKED = "onnx-int8-unpacked"
# Bundles exported as before issue 30's fused attention (fuse_attention=False): that lever's
# effect, side by side. Not run by default.
UNFUSED = ("onnx-int8-unfused", "onnx-int4-unfused")
# int4 with `sumctl export t5 --int4-block 128` (the default is 32): that choice's speed, side by
# side. Not run by default either.
INT4_B128 = "onnx-int4-b128"
OPT_IN = (UNPACKED, *UNFUSED, INT4_B128)
# Each exported engine: (its quantization, whether its decoder's attention is fused, int4 block size).
EXPORTS = {"onnx-fp32": ("none", True, 32), "onnx-int8": ("int8", True, 32), "onnx-int8-block": ("int8-block", True, 32),
           "onnx-int4": ("int4", True, 32), INT4_B128: ("int4", True, 128), "onnx-int8-unfused": ("int8", False, 32),
           "onnx-int4-unfused": ("int4", False, 32)}
# ours / CTranslate2 (issue 17 tightened latency from issue 6's 0.8), and decode against its floor
TARGETS = {"latency": 0.6, "beam_latency": 1.0, "rss": 1.0, "size": 1.0, "decode_floor": 1.5}
# onnx-int4 / CTranslate2 int8 (issue 30's acceptance)
INT4_TARGETS = {"latency": 0.45, "rss": 0.6, "size": 0.6}


def decode_bytes_per_token(config: dict) -> dict:
    """What one greedy decoding step of a T5 must read, from its config.json: the int8 weights of
    every decoder product it runs (self-attention, the cross-attention query and output, the
    feed-forward, the LM head) and the fp32 cross-attention cache of a full input. The keys and
    values of the cross-attention are projected once per document, so their weights are not
    read per token; issue 17's 442 MB counted them, and not the cache."""
    d, inner, ff = config["d_model"], config["num_heads"] * config["d_kv"], config["d_ff"]
    layers = config.get("num_decoder_layers") or config["num_layers"]
    gated = str(config.get("feed_forward_proj", "")).startswith("gated")
    ffn = (3 if gated else 2) * d * ff
    step_weights = layers * (4 * d * inner + 2 * d * inner + ffn) + config["vocab_size"] * d
    all_weights = step_weights + layers * 2 * d * inner
    cross_cache = layers * 2 * INPUT_TOKENS * inner * 4
    return {"step_weights": step_weights, "all_decoder_weights": all_weights, "cross_cache": cross_cache}


def bundle_step_bytes(bundle: Path) -> int:
    """What one greedy step of this bundle reads: the stored bytes of every weight its decoder's
    cache branch uses (int4 blocks and their scales, int8 weights, fp32 norms, as stored), less
    the token embedding, of which a step reads one row, and the fp32 cross-attention cache of a
    full input. The bundle's own floor, where decode_bytes_per_token assumes int8 throughout."""
    import onnx

    config = json.loads((bundle / "config.json").read_text())
    graph = onnx.load(str(bundle / "decoder_model_merged.onnx"), load_external_data=False).graph
    sizes = {}
    for tensor in graph.initializer:
        stored = {e.key: e.value for e in tensor.external_data}
        sizes[tensor.name] = int(stored["length"]) if "length" in stored else len(tensor.raw_data)
    branch = next(n for n in graph.node if n.op_type == "If")
    with_cache = next(a.g for a in branch.attribute if a.name == "then_branch")
    used, rows = set(), set()

    def walk(g):
        for tensor in g.initializer:
            sizes.setdefault(tensor.name, len(tensor.raw_data))
        for node in g.node:
            used.update(node.input)
            if node.op_type == "Gather":
                rows.add(node.input[0])
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    walk(sub)

    walk(with_cache)
    inner = config["num_heads"] * config["d_kv"]
    layers = config.get("num_decoder_layers") or config["num_layers"]
    return sum(sizes[name] for name in used - rows if name in sizes) + layers * 2 * INPUT_TOKENS * inner * 4


def document_ids(vocab_size: int, seed: int = 0) -> list[int]:
    """512 fixed ids: 511 ordinary tokens (ids 3+, past pad/eos/unk), then </s>."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(3, vocab_size) for _ in range(INPUT_TOKENS - 1)] + [1]


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def ct2_vocabulary(model: Path) -> tuple[list[str], dict[str, int]]:
    """The converted model's tokens, and the way back from token to id.

    CTranslate2 takes tokens, not ids. The converter pads the (tiny) tokenizer's vocabulary with
    <extra_id_N> up to the model's size, so every id has a token; a duplicate token would send
    some id to another one, which would silently change the workload, so it stops the run.
    """
    tokens = json.loads((Path(model) / "shared_vocabulary.json").read_text())
    index = {token: i for i, token in enumerate(tokens)}
    if len(index) != len(tokens):
        raise SystemExit(f"{model}: shared_vocabulary.json repeats tokens; ids would not round-trip")
    return tokens, index


# -- the child: one engine, one setting, one process ------------------------------------------------


def run_child(engine: str, model: Path, threads: int, repeat: int, beams: int = 1, batch: int = 1) -> dict:
    """`repeat` 0 runs the warm-up only: the tokens of a reference, with no timing."""
    started = time.perf_counter()
    if engine == "pytorch-fp32":
        import torch
        from transformers import AutoModelForSeq2SeqLM

        torch.set_num_threads(threads)
        net = AutoModelForSeq2SeqLM.from_pretrained(model, torch_dtype=torch.float32).eval()
        ids = torch.tensor([document_ids(net.config.vocab_size, seed) for seed in range(batch)])
        mask = torch.ones_like(ids)

        def encode():
            with torch.inference_mode():
                net.encoder(input_ids=ids, attention_mask=mask)

        def documents():
            with torch.inference_mode():
                out = net.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=beams,
                                   length_penalty=1.0, no_repeat_ngram_size=0,
                                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
            return [row[1:] for row in out.tolist()]
    elif engine == "ct2-int8":
        import ctranslate2

        translator = ctranslate2.Translator(str(model), device="cpu", compute_type="int8",
                                            intra_threads=threads, inter_threads=1)
        vocab, index = ct2_vocabulary(model)
        source = [[vocab[i] for i in document_ids(len(vocab), seed)] for seed in range(batch)]

        def encode():
            translator.translate_batch(source, beam_size=1, max_batch_size=batch, max_decoding_length=1,
                                       min_decoding_length=0)

        def documents():
            results = translator.translate_batch(source, beam_size=beams, max_batch_size=batch,
                                                 length_penalty=1.0, no_repeat_ngram_size=0,
                                                 max_decoding_length=NEW_TOKENS, min_decoding_length=NEW_TOKENS)
            return [[index[token] for token in r.hypotheses[0]] for r in results]
    else:
        from sumctl.runtime.bundle import load_bundle
        from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

        backend = OnnxT5Backend(load_bundle(model, verify=False), threads=threads,
                                prepack_decoder=engine != UNPACKED)
        vocab_size = backend.bundle.manifest.backend_config["decoder"]["vocab_size"]
        docs = [document_ids(vocab_size, seed) for seed in range(batch)]

        def encode():
            backend.run_encoder(docs)

        def documents():
            return backend.generate_ids(docs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                        num_beams=beams, no_repeat_ngram_size=0, length_penalty=1.0,
                                        batch_size=batch)

    load_s = time.perf_counter() - started
    outputs = documents()  # warm-up: first-run allocations are not per-call cost
    if any(len(tokens) != NEW_TOKENS for tokens in outputs):
        raise SystemExit(f"{engine}: generated {[len(t) for t in outputs]} tokens, not {NEW_TOKENS} each")
    times, encoder_times = [], []
    for _ in range(repeat):
        # The single-document figure is the one compared. Its encoder call is timed before each
        # document, and the median kept: on this VM one process's encoder ran at 0.8 or 1.3 s by
        # no cause of its own, once switching mid-run, and decode is s/doc less the encoder.
        if beams == 1 and batch == 1:
            t = time.perf_counter()
            encode()
            encoder_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        documents()
        times.append(time.perf_counter() - t)
    encoder_s = round(statistics.median(encoder_times), 3) if encoder_times else None
    seconds = round(statistics.median(times), 3) if times else None
    return {"engine": engine, "beams": beams, "batch": batch, "load_s": round(load_s, 2),
            "s_per_call": seconds, "runs_s": [round(x, 3) for x in times], "encoder_s": encoder_s,
            "peak_rss_mb": round(peak_rss_mb(), 1), "tokens": outputs[0]}


def measure(engine: str, model: Path, threads: int, repeat: int, beams: int = 1, batch: int = 1) -> dict:
    setting = f"{engine} (beams {beams}, batch {batch}{', reference tokens only' if not repeat else ''})"
    print(f"measuring {setting} ...", file=sys.stderr, flush=True)
    return run_in_child("sumctl.benchmarks.perf.t5_speed",
                        ["--child", engine, "--model", model, "--threads", threads, "--repeat", repeat,
                         "--beams", beams, "--batches", batch], label=setting)


# -- the parent: build, export, convert, measure, report --------------------------------------------


def prepare(workdir: Path, small: bool, engines: list[str], reuse: bool) -> tuple[dict[str, Path], dict]:
    """The checkpoint and each engine's model; with `reuse`, what a --keep run left (the CTranslate2
    model is converted when missing, so a workdir kept before it was a peer still serves)."""
    checkpoint = workdir / "flan-t5-large-random"
    paths = {"pytorch-fp32": checkpoint, **{name: workdir / name for name in EXPORTS},
             UNPACKED: workdir / "onnx-int8", "ct2-int8": workdir / "ct2-int8"}
    timings: dict = {"reused": str(workdir)} if reuse else {}
    if reuse:
        needed = [checkpoint / "config.json"] + [paths[e] / "sumctl.json" for e in engines if e.startswith("onnx")]
        for path in needed:
            if not path.is_file():
                raise SystemExit(f"--reuse: {path} is missing (run once with --keep first)")
    else:
        from sumctl.exporters.onnx_t5 import export_t5
        from sumctl.benchmarks.perf.models import build_tiny_t5, flan_t5_large_config

        t = time.perf_counter()
        # The tokenizer is the tiny trained one: the workload is token ids, so it only has to exist.
        build_tiny_t5(checkpoint, config=None if small else flan_t5_large_config(), eos_logit_scale=1.0)
        timings["build_s"] = round(time.perf_counter() - t, 1)
        for name, (quantize, fused, block) in EXPORTS.items():
            if name in engines or (name == "onnx-int8" and UNPACKED in engines):
                t = time.perf_counter()
                export_t5(str(checkpoint), paths[name], quantize=quantize, verify=False, fuse_attention=fused,
                          int4_block_size=block,
                          label="benchmark: random weights")
                timings[f"export_{name.replace('-', '_')}_s"] = round(time.perf_counter() - t, 1)
    ct2_model = paths["ct2-int8"]
    if "ct2-int8" in engines and not (reuse and (ct2_model / "model.bin").is_file()):
        import ctranslate2.converters

        t = time.perf_counter()
        ctranslate2.converters.TransformersConverter(str(checkpoint)).convert(str(ct2_model), quantization="int8",
                                                                              force=True)
        timings["convert_ct2_int8_s"] = round(time.perf_counter() - t, 1)
    return paths, timings


def agreement(reference: list[int], tokens: list[int]) -> float:
    same = sum(a == b for a, b in zip(reference, tokens))
    return same / max(len(reference), len(tokens), 1)


def ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def fmt(value, spec: str, suffix: str = "") -> str:
    """`value` in a right-aligned `spec` (">8.2f"), or a dash as wide for a figure not measured."""
    if value is None:
        return "-".rjust(int(spec[1:].split(".")[0]) + len(suffix))
    return f"{value:{spec}}{suffix}"


def _peaks(row: dict) -> str:
    return f"{row['peak_rss_min_mb']:.0f}/{row['peak_rss_median_mb']:.0f}/{row['peak_rss_mb']:.0f}"


def parse_engines(text: str) -> list[str]:
    chosen = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"engines are a comma list of {', '.join(ENGINES)}")
    return [e for e in ENGINES if e in chosen]  # the table's order, whatever the command line's


def parse_batches(text: str) -> list[int]:
    try:
        sizes = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("batches are a comma list of sizes >= 1, e.g. 1,4,8")
    return sizes


def print_table(header: str, lines: list[str]) -> None:
    print()
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line.rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", type=parse_engines,
                        default=[e for e in ENGINES if e not in OPT_IN],
                        help=f"comma list of {', '.join(ENGINES)} (default all)")
    parser.add_argument("--beams", type=int, default=4, help="beam size of the beam search rows (default 4)")
    parser.add_argument("--no-beam", action="store_true", help="skip the beam search rows")
    parser.add_argument("--batches", type=parse_batches, default=[1, 4, 8],
                        help="batch sizes for documents per minute (default 1,4,8; 1 skips batching)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and models")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the checkpoint and models a --keep run left in --workdir")
    parser.add_argument("--memory-runs", type=int, default=5,
                        help="fresh processes whose peak RSS is measured per engine (default 5)")
    parser.add_argument("--small", action="store_true", help="a tiny T5 instead (checks the script)")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(strict_dumps(run_child(args.child, args.model, args.threads, args.repeat, args.beams,
                                     args.batches[0])))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.memory_runs < 1:
        parser.error("--memory-runs must be at least 1")
    if args.reuse and not args.workdir:
        parser.error("--reuse needs the --workdir of a --keep run")
    if args.beams < 2:
        args.no_beam = True  # beam 1 is the greedy row

    engines = list(args.engines)
    skipped = {}
    if "ct2-int8" in engines:
        try:
            import ctranslate2
            ct2_version = ctranslate2.__version__
        except ImportError as e:
            engines.remove("ct2-int8")
            skipped["ct2-int8"] = f"ctranslate2 is not installed ({e}); pip install 'sumctl[bench]'"
    peers = [e for e in PEERS if e in engines]
    beams = 0 if args.no_beam else args.beams
    batches = [b for b in args.batches if b > 1]
    # The fp32 reference every token agreement is measured against.
    ref = next((e for e in ("pytorch-fp32", "onnx-fp32") if e in engines), None)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sumctl-t5-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        model = "tiny T5 (--small)" if args.small else "FLAN-T5-Large architecture, random weights"
        print(f"t5_speed: {model}; {INPUT_TOKENS} input tokens, {NEW_TOKENS} generated (fixed length); "
              f"{args.threads} threads; median of {args.repeat} after a warm-up; engines {','.join(engines)}"
              + (f" (ctranslate2 {ct2_version})" if "ct2-int8" in engines else "")
              + f"; beam search {beams or 'off'}; batches {','.join(map(str, [1] + batches))}; "
              f"load average {load_before[0]:.1f}", flush=True)
        for engine, why in skipped.items():
            print(f"{engine}: row skipped, {why}", flush=True)
        if not engines:
            raise SystemExit("no engine left to measure")
        paths, timings = prepare(workdir, args.small, engines, args.reuse)
        rows = {}
        for engine in engines:
            rows[engine] = measure(engine, paths[engine], args.threads, args.repeat)
            peaks = [rows[engine]["peak_rss_mb"]]
            for _ in range(args.memory_runs - 1):
                peaks.append(measure(engine, paths[engine], args.threads, 1)["peak_rss_mb"])
            spread = peak_distribution(peaks)
            rows[engine].update(peak_rss_runs_mb=peaks, peak_rss_mb=spread["max"], peak_rss_min_mb=spread["min"],
                                peak_rss_median_mb=spread["median"], peak_rss_spread=spread["spread"])
            size = (sum(p.stat().st_size for p in paths[engine].glob("*.safetensors")) / 2**20
                    if engine == "pytorch-fp32" else folder_mb(paths[engine]))
            rows[engine]["size_mb"] = round(size, 1)
        beam_rows = {}
        if beams and peers:
            if ref:
                beam_rows[ref] = measure(ref, paths[ref], args.threads, 0, beams=beams)
            for engine in peers:
                beam_rows[engine] = measure(engine, paths[engine], args.threads, args.repeat, beams=beams)
        decoders = [e for e in engines if e in EXPORTS and e != "onnx-fp32"] + ([UNPACKED] if UNPACKED in engines else [])
        bandwidth = read_bandwidth_gbs(args.threads) if decoders else None
        model_config = json.loads((paths[decoders[0]] / "config.json").read_text()) if bandwidth else None
        own_bytes = {e: bundle_step_bytes(paths[e]) for e in decoders} if bandwidth else {}
        batch_rows = {engine: {1: rows[engine]} for engine in peers}
        for size in batches:
            for engine in peers:
                batch_rows[engine][size] = measure(engine, paths[engine], args.threads, args.repeat, batch=size)
        load_after = os.getloadavg()
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(workdir, ignore_errors=True)

    headline = {"model": "tiny-t5" if args.small else "flan-t5-large-random", "threads": args.threads,
                "input_tokens": INPUT_TOKENS, "new_tokens": NEW_TOKENS, "repeat": args.repeat,
                "memory_runs": args.memory_runs,
                "engines": engines, "beams": beams or None, "batches": [1] + batches}
    for engine, why in skipped.items():
        headline[f"{engine.replace('-', '_')}_skipped"] = why

    # Greedy, one document: every engine.
    base = rows.get("pytorch-fp32")
    ref_label = LABELS.get(ref, "fp32")
    ref_key = {"pytorch-fp32": "pytorch", "onnx-fp32": "onnx_fp32"}.get(ref)
    header = (f"{'engine':<19}{'s/doc':>8}{'speedup':>9}{'encoder s':>11}{'peak RSS MB min/med/max':>25}{'RSS ratio':>11}"
              f"{'size MB':>10}{'size ratio':>12}" + (f"{f'tokens = {ref_label}':>20}" if ref else ""))
    lines = []
    for engine in engines:
        r = rows[engine]
        r["s_per_doc"] = r["s_per_call"]
        r["speedup"] = ratio(base["s_per_doc"], r["s_per_doc"]) if base else None
        r["rss_ratio"] = ratio(r["peak_rss_mb"], base["peak_rss_mb"]) if base else None
        r["size_ratio"] = ratio(r["size_mb"], base["size_mb"]) if base else None
        r["agreement"] = round(agreement(rows[ref]["tokens"], r["tokens"]), 4) if ref else None
        encoder = fmt(r["encoder_s"], ">10.2f", "*" if engine == "ct2-int8" else " ")
        lines.append(f"{engine:<19}{r['s_per_doc']:>8.2f}{fmt(r['speedup'], '>8.2f', 'x')}{encoder}"
                     f"{_peaks(r):>25}{fmt(r['rss_ratio'], '>10.2f', 'x')}{r['size_mb']:>10.1f}"
                     f"{fmt(r['size_ratio'], '>11.2f', 'x')}" + (fmt(r["agreement"], ">20.1%") if ref else ""))
        key = engine.replace("-", "_")
        headline.update({f"{key}_s_per_doc": r["s_per_doc"], f"{key}_encoder_s": r["encoder_s"],
                         f"{key}_peak_rss_mb": r["peak_rss_mb"], f"{key}_peak_rss_mb_min": r["peak_rss_min_mb"],
                         f"{key}_peak_rss_mb_median": r["peak_rss_median_mb"],
                         f"{key}_peak_rss_spread": r["peak_rss_spread"],
                         f"{key}_size_mb": r["size_mb"]})
        if base and engine != "pytorch-fp32":
            headline.update({f"{key}_speedup_vs_pytorch": r["speedup"], f"{key}_rss_ratio_vs_pytorch": r["rss_ratio"],
                             f"{key}_size_ratio_vs_pytorch": r["size_ratio"]})
        if ref and engine != ref:
            headline[f"{key}_token_agreement_vs_{ref_key}"] = r["agreement"]
    print_table(header, lines)
    if "ct2-int8" in engines:
        print("* CTranslate2 has no encoder-only call: its encoder figure includes one decode step.")

    # Beam search: the peers against the fp32 reference's own beam search.
    if beam_rows:
        header = (f"{'beam ' + str(beams):<14}{'s/doc':>8}{'peak RSS MB':>13}"
                  + (f"{f'tokens = {ref_label} beam {beams}':>27}" if ref else ""))
        lines = []
        for engine in peers:
            r = beam_rows[engine]
            r["agreement"] = round(agreement(beam_rows[ref]["tokens"], r["tokens"]), 4) if ref else None
            lines.append(f"{engine:<14}{r['s_per_call']:>8.2f}{r['peak_rss_mb']:>13.0f}"
                         + (fmt(r["agreement"], ">27.1%") if ref else ""))
            key = f"{engine.replace('-', '_')}_beam{beams}"
            headline.update({f"{key}_s_per_doc": r["s_per_call"], f"{key}_peak_rss_mb": r["peak_rss_mb"]})
            if ref:
                headline[f"{key}_token_agreement_vs_{ref_key}"] = r["agreement"]
        print_table(header, lines)

    # ours / CTranslate2, against issue 6's targets (a beam search ratio only has to stay below 1).
    for name in [e for e in ("onnx-int8", "onnx-int8-block", "onnx-int4", INT4_B128)
                 if e in engines and "ct2-int8" in engines]:
        ours, peer = rows[name], rows["ct2-int8"]
        targets = INT4_TARGETS if name.startswith("onnx-int4") else TARGETS
        checks = [("latency", "s/doc", ".2f", ours["s_per_doc"], peer["s_per_doc"], "latency"),
                  ("rss", "worst peak RSS MB", ".0f", ours["peak_rss_mb"], peer["peak_rss_mb"], "rss"),
                  ("size", "size MB", ".1f", ours["size_mb"], peer["size_mb"], "size")]
        if name in beam_rows:
            checks.insert(1, (f"beam{beams}_latency", f"s/doc, beam {beams}", ".2f",
                              beam_rows[name]["s_per_call"], beam_rows["ct2-int8"]["s_per_call"],
                              "beam_latency"))
        header = f"{name + ' vs ct2-int8':<22}{'ours':>9}{'ct2':>9}{'ours/ct2':>10}{'target':>9}{'met':>6}"
        lines = []
        for key, label, spec, a, b, target in checks:
            r, limit = ratio(a, b), targets[target]
            strict = target == "beam_latency"
            # From the unrounded values: 752.5 MB against 750.1 MB rounds to 1.00x, and is a miss.
            met = r is not None and (a / b < limit if strict else a / b <= limit)
            lines.append(f"{label:<22}{a:>9{spec}}{b:>9{spec}}{fmt(r, '>9.2f', 'x')}"
                         f"{('< ' if strict else '<= ') + str(limit):>9}{'yes' if met else 'no':>6}")
            headline[f"{name.replace('-', '_')}_{key}_ratio_vs_ct2"] = r
        print_table(header, lines)

    # Decoding against the memory-bandwidth floor: a greedy step streams the decoder's weights.
    if bandwidth and "onnx-int8" in engines:
        need = decode_bytes_per_token(model_config)
        floors = {"issue": need["all_decoder_weights"], "step": need["step_weights"] + need["cross_cache"]}
        header = f"{'decode, ms per token':<34}{'ours':>8}{'ct2':>8}{'floor':>8}{'ours/floor':>12}{'target':>9}{'met':>6}"
        per_token = {e: (rows[e]["s_per_doc"] - rows[e]["encoder_s"]) / NEW_TOKENS * 1000 for e in peers}
        theirs = fmt(per_token.get("ct2-int8"), ">8.1f")
        lines = []
        for key, label in (("issue", "floor: all decoder weights"), ("step", "floor: what a step reads")):
            floor_ms = floors[key] / (bandwidth * 1e9) * 1000
            r = per_token["onnx-int8"] / floor_ms
            target, met = "", ""  # the issue's floor is the one with a target
            if key == "issue":
                target, met = f"<= {TARGETS['decode_floor']}", "yes" if r <= TARGETS["decode_floor"] else "no"
            lines.append(f"{label:<34}{per_token['onnx-int8']:>8.1f}{theirs}{floor_ms:>8.1f}{r:>11.2f}x{target:>9}{met:>6}")
            headline[f"decode_floor_{key}_ms"] = float(f"{floor_ms:.4g}")  # tiny for --small
            headline[f"onnx_int8_decode_{key}_floor_ratio"] = round(r, 2)
        print_table(header, lines)
        print(f"decode = (s/doc - encoder s) / {NEW_TOKENS}; floors at the {bandwidth:.1f} GB/s read "
              f"here ({bandwidth_method(args.threads)}): all decoder weights (issue 17's, "
              f"{floors['issue'] / 1e6:.0f} MB: int8, cross-attention keys and values included), or what "
              f"a step reads ({need['step_weights'] / 1e6:.0f} MB of int8 weights and the "
              f"{need['cross_cache'] / 1e6:.0f} MB fp32 cross-attention cache).")
        headline["read_bandwidth_gbs"] = round(bandwidth, 1)
        headline["read_bandwidth_method"] = bandwidth_method(args.threads)
        for engine, ms in per_token.items():
            headline[f"{engine.replace('-', '_')}_decode_ms_per_token"] = float(f"{ms:.4g}")

    # Each quantized bundle against the floor of what its own step reads (issue 30's <= 1.5x).
    if own_bytes:
        header = f"{'decode, ms per token':<22}{'ours':>8}{'step MB':>9}{'floor ms':>10}{'ours/floor':>12}{'target':>9}{'met':>6}"
        lines = []
        for engine in decoders:
            ms = (rows[engine]["s_per_doc"] - rows[engine]["encoder_s"]) / NEW_TOKENS * 1000
            floor_ms = own_bytes[engine] / (bandwidth * 1e9) * 1000
            r = ms / floor_ms
            met = "yes" if r <= TARGETS["decode_floor"] else "no"
            lines.append(f"{engine:<22}{ms:>8.1f}{own_bytes[engine] / 1e6:>9.0f}{floor_ms:>10.1f}{r:>11.2f}x"
                         f"{'<= ' + str(TARGETS['decode_floor']):>9}{met:>6}")
            key = engine.replace("-", "_")
            headline.update({f"{key}_decode_ms_per_token": float(f"{ms:.4g}"),
                             f"{key}_step_mb": round(own_bytes[engine] / 1e6, 1),
                             f"{key}_decode_own_floor_ms": float(f"{floor_ms:.4g}"),
                             f"{key}_decode_own_floor_ratio": round(r, 2)})
        print_table(header, lines)
        print(f"each bundle's floor: the stored bytes of the weights its decoder's cache branch uses (the "
              f"token embedding's one row left out) and the fp32 cross-attention cache, at {bandwidth:.1f} GB/s.")
        headline["read_bandwidth_gbs"] = round(bandwidth, 1)

    # Batching: documents per minute, B distinct documents in one call.
    if batches and peers:
        both = len(peers) == 2
        header = (f"{'batching':<14}{'batch':>6}{'s/call':>8}{'docs/min':>10}{'gain':>7}{'peak RSS MB':>13}"
                  + (f"{'ours/ct2 time':>15}" if both else "")
                  + (f"{f'doc 0 = {ref_label}':>20}" if ref else ""))
        lines = []
        for engine in peers:
            key = engine.replace("-", "_")
            for size in [1] + batches:
                r = batch_rows[engine][size]
                r["docs_per_min"] = round(size / r["s_per_call"] * 60, 1)
                r["gain"] = round(r["docs_per_min"] / batch_rows[engine][1]["docs_per_min"], 2)
                line = (f"{engine:<14}{size:>6}{r['s_per_call']:>8.2f}{r['docs_per_min']:>10.1f}{r['gain']:>6.2f}x"
                        f"{r['peak_rss_mb']:>13.0f}")
                headline[f"{key}_batch{size}_docs_per_min"] = r["docs_per_min"]
                if size > 1:
                    headline.update({f"{key}_batch{size}_gain": r["gain"],
                                     f"{key}_batch{size}_peak_rss_mb": r["peak_rss_mb"]})
                if both:
                    theirs = batch_rows["ct2-int8"][size]["s_per_call"]
                    time_ratio = ratio(r["s_per_call"], theirs) if engine == "onnx-int8" else None
                    line += fmt(time_ratio, ">14.2f", "x") if time_ratio is not None else " " * 15
                    if time_ratio is not None and size > 1:
                        headline[f"onnx_int8_batch{size}_latency_ratio_vs_ct2"] = time_ratio
                if ref:
                    r["agreement"] = round(agreement(rows[ref]["tokens"], r["tokens"]), 4)
                    line += fmt(r["agreement"], ">20.1%")
                    if size > 1:
                        headline[f"{key}_batch{size}_token_agreement_vs_{ref_key}"] = r["agreement"]
                lines.append(line)
        print_table(header, lines)
        print("batch 1 is the greedy row; doc 0 is the same document in every batch.")

    print()
    runs = [f"{e} {rows[e]['runs_s']}" for e in engines]
    runs += [f"{e} beam {beams} {beam_rows[e]['runs_s']}" for e in peers if e in beam_rows]
    runs += [f"{e} batch {b} {batch_rows[e][b]['runs_s']}" for b in batches for e in peers]
    print("runs (s): " + "; ".join(runs))
    print(f"build, export and convert (s): {timings}; load average before {load_before[0]:.1f}, "
          f"after {load_after[0]:.1f}")
    print("ONNX fp32 should agree 100% with PyTorch; int8's and int4's agreement on random weights is a "
          "lower bound for real ones (random logits have small margins).")
    if "ct2-int8" in beam_rows:
        # Seen on the tiny T5: CTranslate2 fp32 matches PyTorch greedy token for token, not its beam search.
        print("CTranslate2's beam search is not transformers' (its pruning differs), so ct2's beam agreement "
              "mixes search and int8 differences.")
    headline["load_avg_before"] = round(load_before[0], 2)
    headline["load_avg_after"] = round(load_after[0], 2)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
