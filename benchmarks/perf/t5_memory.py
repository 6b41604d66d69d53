"""Where the int8 T5 runtime's peak memory goes, phase by phase, over fresh processes.

    python -m sumctl.benchmarks.perf.t5_memory --workdir t5bench [--runs 5] [--threads 2]
        [--page-cache as-is|evict|read] [--engines onnx-int8,onnx-int8-unshed,onnx-int8-glibc,ct2-int8]
        [--small]

The bundle is the one `python -m sumctl.benchmarks.perf.t5_speed --keep --workdir t5bench` left
(FLAN-T5-Large architecture, random weights), or it is built here when missing. Each run is a
fresh process that loads the model and summarizes two documents (512 tokens in, 64 out, greedy);
before each phase it resets its peak RSS (/proc/self/clear_refs 5) and after it records:
- the phase's peak RSS, RSS split into file and anonymous pages;
- for `weights.bin`: how much of the encoder's and the decoder's mappings is resident, how much
  of that is mapped by whole 2 MB page-table entries (smaps FilePmdMapped), and the page cache's
  folios behind the resident pages (/proc/kpageflags, root only: huge, other large, small);
- /proc/meminfo FileHugePages.

`--page-cache` sets the page cache before every run: `as-is` (whatever an earlier run or the
export left), `evict` (posix_fadvise DONTNEED on the bundle's files, so the process faults the
weights in itself) or `read` (evicted, then read once with read(2), as `cat` would).
CTranslate2 (the `bench` extra) is measured the same number of times for the comparison, and
`onnx-int8-glibc` is sumctl's runtime left with glibc's own rising mmap threshold
(OnnxT5Backend's steady_heap=False): the runtime before that fix. `onnx-int8-unshed` is sumctl's
runtime without shedding (shed_weight_pages=False): the pages a phase reads stay resident until
it ends, and the decoder's mapped originals stay resident while ORT prepacks them.
The last line is one JSON object: min, median and max peak RSS per engine.
"""

from __future__ import annotations

import argparse
import mmap
import os
import struct
import sys
import time
from pathlib import Path

from sumctl.benchmarks.eval.memory import peak_distribution, peak_rss_mb
from sumctl.benchmarks.perf.kit import print_headline, run_in_child
from sumctl.runtime.jsonout import strict_dumps

PHASES = ("load", "document 1", "document 2")
ENGINES = ("onnx-int8", "onnx-int8-unshed", "onnx-int8-glibc", "ct2-int8")
STABLE = 0.10  # issue 17: fresh processes in a row stay within 10% of each other
_KPF_COMPOUND_HEAD, _KPF_COMPOUND_TAIL, _KPF_THP = 15, 16, 22


def _status_kib(*keys: str) -> dict[str, int]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in keys:
            values[name] = int(rest.split()[0])
    return values


def _meminfo_kib(key: str) -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> None:
    """Start a new VmHWM from the current RSS (Linux 4.0+: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def mappings() -> list[dict]:
    """This process's mappings, each with its path (None when anonymous) and smaps figures (KiB)."""
    maps, current = [], None
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                start, end = (int(x, 16) for x in head[0].split("-"))
                current = {"start": start, "end": end, "offset": int(head[2], 16),
                           "path": head[5].rstrip("\n") if len(head) == 6 else None}
                maps.append(current)
            elif current is not None and head and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
                current[head[0][:-1]] = int(head[1])
    return maps


def largest_anonymous(maps: list[dict], count: int = 4) -> list[str]:
    """The mappings holding the most anonymous memory, as `name@size:MB` (the heap, a malloc
    arena's anonymous mapping, a thread stack...), to tell who holds a peak."""
    ranked = sorted(maps, key=lambda m: -m.get("Anonymous", 0))[:count]
    return [f"{Path(m['path']).name if m['path'] else 'anon'}@{(m['end'] - m['start']) >> 20}MB:"
            f"{m.get('Anonymous', 0) >> 10}" for m in ranked]


def folio_kinds(maps: list[dict]) -> dict[str, int] | None:
    """KiB of the mappings' resident pages by the page cache folio behind them: part of a 2 MB
    (PMD) folio, of another large folio, or a single page. None without /proc/kpageflags (root)."""
    counts = {"huge_kib": 0, "large_kib": 0, "small_kib": 0}
    try:
        pagemap = open("/proc/self/pagemap", "rb")
        flags = open("/proc/kpageflags", "rb")
    except OSError:
        return None
    with pagemap, flags:
        for m in maps:
            pages = (m["end"] - m["start"]) // mmap.PAGESIZE
            pagemap.seek(m["start"] // mmap.PAGESIZE * 8)
            entries = struct.unpack(f"{pages}Q", pagemap.read(pages * 8))
            for entry in entries:
                if not entry >> 63 & 1:  # not present
                    continue
                pfn = entry & ((1 << 55) - 1)
                if pfn == 0:  # no CAP_SYS_ADMIN: the kernel hides frame numbers
                    return None
                flags.seek(pfn * 8)
                bits = struct.unpack("Q", flags.read(8))[0]
                if bits >> _KPF_THP & 1:
                    counts["huge_kib"] += mmap.PAGESIZE // 1024
                elif bits >> _KPF_COMPOUND_HEAD & 1 or bits >> _KPF_COMPOUND_TAIL & 1:
                    counts["large_kib"] += mmap.PAGESIZE // 1024
                else:
                    counts["small_kib"] += mmap.PAGESIZE // 1024
    return counts


def process_figures() -> dict:
    """This phase's peak RSS and the RSS now, split into anonymous and file pages (MB)."""
    status = _status_kib("VmHWM", "VmRSS", "RssAnon", "RssFile")
    return {"peak_mb": status["VmHWM"] // 1024, "rss_mb": status["VmRSS"] // 1024,
            "anon_mb": status["RssAnon"] // 1024, "file_mb": status["RssFile"] // 1024}


def snapshot(weights: Path, encoder_regions: frozenset, decoder_regions: frozenset) -> dict:
    everything = mappings()
    target = str(Path(weights).resolve())
    maps = [m for m in everything if m["path"] == target]

    def resident(regions):
        chosen = [m for m in maps if (m["start"], m["end"]) in regions]
        return sum(m.get("Rss", 0) for m in chosen) // 1024

    return process_figures() | {
        "weight_maps": len(maps), "encoder_resident_mb": resident(encoder_regions),
        "decoder_resident_mb": resident(decoder_regions),
        "unknown_maps": sum((m["start"], m["end"]) not in encoder_regions | decoder_regions for m in maps),
        "pmd_mapped_mb": sum(m.get("FilePmdMapped", 0) for m in maps) // 1024,
        "weights_written_mb": sum(m.get("Anonymous", 0) for m in maps) // 1024,
        "largest_anon": largest_anonymous(everything),
        "folios": folio_kinds(maps), "file_huge_pages_mb": (_meminfo_kib("FileHugePages") or 0) // 1024}


def run_child(engine: str, model: Path, threads: int) -> dict:
    from sumctl.benchmarks.perf.t5_speed import NEW_TOKENS, document_ids

    phases = {}
    _reset_peak()
    started = time.perf_counter()
    if engine == "ct2-int8":
        import ctranslate2

        from sumctl.benchmarks.perf.t5_speed import ct2_vocabulary

        translator = ctranslate2.Translator(str(model), device="cpu", compute_type="int8",
                                            intra_threads=threads, inter_threads=1)
        vocab, _ = ct2_vocabulary(model)
        source = [[vocab[i] for i in document_ids(len(vocab))]]

        def document():
            translator.translate_batch(source, beam_size=1, max_decoding_length=NEW_TOKENS,
                                       min_decoding_length=NEW_TOKENS)

        state = process_figures
    else:
        from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
        from sumctl.runtime.bundle import load_bundle
        from sumctl.runtime.bundle.configs import WEIGHTS

        # glibc: what the runtime did before native_heap; unshed: every weight page read stays
        # resident until its phase ends.
        backend = OnnxT5Backend(load_bundle(model, verify=False), threads=threads,
                                steady_heap=engine != "onnx-int8-glibc",
                                shed_weight_pages=engine != "onnx-int8-unshed")
        weights = backend.bundle.file(WEIGHTS)
        regions = backend.weight_regions
        ids = document_ids(backend.bundle.manifest.backend_config["decoder"]["vocab_size"])

        def document():
            backend.generate_ids([ids], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)

        def state():
            return snapshot(weights, regions["encoder"], regions["decoder"])
    phases["load"] = state() | {"seconds": round(time.perf_counter() - started, 2)}
    for phase in PHASES[1:]:
        _reset_peak()
        t = time.perf_counter()
        document()
        phases[phase] = state() | {"seconds": round(time.perf_counter() - t, 2)}
    return {"engine": engine, "peak_mb": round(max(p["peak_mb"] for p in phases.values()), 1),
            "lifetime_peak_mb": round(peak_rss_mb(), 1), "phases": phases}


def set_page_cache(folder: Path, how: str) -> None:
    if how == "as-is":
        return
    os.sync()  # dirty pages cannot be dropped
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if how == "read":
        for path in files:
            with open(path, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass


def measure(engine: str, model: Path, threads: int) -> dict:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)  # the runtime's own setting, not the caller's
    return run_in_child("sumctl.benchmarks.perf.t5_memory",
                        ["--child", engine, "--model", model, "--threads", threads], label=engine, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=False, default=Path("t5bench"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--page-cache", choices=("as-is", "evict", "read"), default="as-is")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}")
    parser.add_argument("--small", action="store_true", help="a tiny T5 instead (checks the script)")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(strict_dumps(run_child(args.child, args.model, args.threads)))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown or not engines:
        parser.error(f"--engines is a comma list of {', '.join(ENGINES)}")
    from sumctl.benchmarks.perf.t5_speed import prepare

    built = ["ct2-int8" if e == "ct2-int8" else "onnx-int8" for e in engines]
    reuse = (args.workdir / "onnx-int8" / "sumctl.json").is_file()
    args.workdir.mkdir(parents=True, exist_ok=True)
    paths, _ = prepare(args.workdir, args.small, built, reuse)
    paths["onnx-int8-glibc"] = paths["onnx-int8-unshed"] = paths["onnx-int8"]
    model = "tiny T5 (--small)" if args.small else "FLAN-T5-Large architecture"
    print(f"t5_memory: {model}, int8; {args.runs} fresh processes per engine, "
          f"2 documents each; {args.threads} threads; page cache {args.page_cache}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {e: [] for e in engines}
    for run in range(args.runs):
        for engine in engines:  # interleaved, so drift hits both alike
            set_page_cache(paths[engine], args.page_cache)
            results[engine].append(measure(engine, paths[engine], args.threads))
            r = results[engine][-1]
            print(f"run {run + 1} {engine:<16} peak {r['peak_mb']:>6.0f} MB  "
                  + "  ".join(f"{phase}: {strict_dumps(p)}" for phase, p in r["phases"].items()), flush=True)
    headline = {"model": "tiny-t5" if args.small else "flan-t5-large-random", "runs": args.runs,
                "page_cache": args.page_cache}
    print()
    for engine in engines:
        d = peak_distribution([r["peak_mb"] for r in results[engine]])
        spread = d["spread"]
        print(f"{engine:<16} peak RSS MB min {d['min']:.0f}  median {d['median']:.0f}  max {d['max']:.0f}  "
              f"(max over min {spread:+.0%}; stable means within {STABLE:.0%}: {'yes' if spread <= STABLE else 'no'})")
        key = engine.replace("-", "_")
        headline.update({f"{key}_peak_rss_mb_min": d["min"], f"{key}_peak_rss_mb_median": d["median"],
                         f"{key}_peak_rss_mb_max": d["max"], f"{key}_peak_rss_spread": spread,
                         f"{key}_peak_rss_stable": spread <= STABLE})
    if {"onnx-int8", "ct2-int8"} <= set(engines):
        worst = headline["onnx_int8_peak_rss_mb_max"] / headline["ct2_int8_peak_rss_mb_max"]
        print(f"worst peak, ours / CTranslate2: {worst:.2f}x (target <= 1.0)")
        headline["onnx_int8_worst_peak_ratio_vs_ct2"] = round(worst, 3)
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
