"""Issue 29's safety check on the oversubscribed case: `sumctl watch` with 2 workers x 2 threads
and `sumctl batch` with 2 workers, this working tree against an earlier revision, side by side
in one run. On a 2-core machine, this tree must be no slower than the revision it replaces.

    python -m sumctl.benchmarks.perf.oversubscribed --against COMMIT [--files 12] [--repeat 1]
                                                    [--model BUNDLE] [--data DIALOGSUM.jsonl]

Files: the first `--files` DialogSum dev dialogues (../shared/data/dialogsum/dialogsum.dev.jsonl),
each written as a `#Person1#: text` transcript by batch_scaling.write_dialogues, their mtimes
set an hour back so that watch finds a settled backlog (no --settle wait). Each timed run gets
fresh copies of them (mtimes kept) in a fresh IN folder, a fresh OUT folder, and runs

    sumctl watch IN --once --workers 2 --threads 2 --out OUT
    sumctl batch IN --out OUT --workers 2 -q          (threads: what batch plans by default)

with no `--model`, so the model is the embedded default a new user gets (the run stops if the
warm-up finds another); `--model` names another bundle folder instead (the test uses the
extractive baseline for speed). Each side is default_speed's Side: that revision's code through
PYTHONPATH, its own model store. One untimed `sumctl summarize` of the standup per side builds
the side's bundle and pages its weights in; then each round runs watch then batch, the sides
alternating (A B A B), for `--repeat` rounds. Figures are medians over the rounds.

Each command is a fresh interpreter running `python -c`: runpy runs sumctl.cli as `python -m`
does, and an atexit hook writes the OMP_WAIT_POLICY in the process's environment as it exits to
stderr (batch's spawned workers inherit that environment; watch's workers are its threads, and
sumctl plans the policy before the first model loads). `unset` means libgomp's default.

Reported per command and side: the workers x threads the command actually ran with (watch's
start log line, batch's JSON report; `?` where a revision says neither), wall seconds of the
whole process, files/s, the wait policy; the ratio this / against of the wall seconds (below 1:
this tree is faster); how many files got byte-identical summary text (the *.summary.json
`summary` field, first round) on both sides. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.perf.batch_scaling import DIALOGSUM, write_dialogues
from sumctl.benchmarks.perf.default_speed import AGAINST, THIS, Side, build_sides, fmt, ratio, warm_up
from sumctl.benchmarks.perf.kit import print_headline
from sumctl.runtime.machine import machine_line, usable_cores

WORKERS, WATCH_THREADS = 2, 2
COMMANDS = ("watch", "batch")
SUFFIX = ".summary.json"
POLICY_TAG = "oversubscribed-bench OMP_WAIT_POLICY="
CHILD = ("import atexit, os, runpy, sys\n"
         f"atexit.register(lambda: sys.stderr.write('\\n{POLICY_TAG}'"
         " + os.environ.get('OMP_WAIT_POLICY', 'unset') + '\\n'))\n"
         "runpy.run_module('sumctl.cli', run_name='__main__', alter_sys=True)\n")
WATCH_PLAN = re.compile(r"(\d+) worker\(s\) x (\d+) thread\(s\)")


def settled_inputs(data: Path, count: int, into: Path) -> Path:
    """The dialogues as transcript files in `into`, last modified an hour ago."""
    if not data.is_file():
        raise SystemExit(f"{data}: DialogSum dev set not found (it lives in ../shared/data/dialogsum); "
                         "pass --data FILE")
    long_ago = time.time() - 3600
    for path in write_dialogues(data, into, count):
        os.utime(path, (long_ago, long_ago))
    return into


def command_args(command: str, src: Path, out: Path, model: str | None) -> list[str]:
    if command == "watch":
        args = ["watch", str(src), "--once", "--workers", str(WORKERS), "--threads", str(WATCH_THREADS),
                "--out", str(out)]
    else:
        args = ["batch", str(src), "--out", str(out), "--workers", str(WORKERS), "-q"]
    return args + (["--model", model] if model else [])


def run_sumctl(side: Side, args: list[str]) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr) of one sumctl process on the side's code and store."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=side.env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{side.name}: sumctl {args[0]} failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-600:]}")
    return wall, done.stdout, done.stderr


def read_outputs(out: Path) -> tuple[dict[str, str], set[str]]:
    """Each file's summary text by its stem, and the model names the records name."""
    summaries, models = {}, set()
    for path in out.rglob("*" + SUFFIX):
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            continue  # batch's done-records under .sumctl/
        record = json.loads(path.read_text(encoding="utf-8"))
        summaries[path.name.removesuffix(SUFFIX)] = record["summary"]
        models.add(record["model"]["name"])
    return summaries, models


def ran_with(command: str, stdout: str, stderr: str) -> tuple[int | None, int | None, str | None]:
    """(workers, threads, OMP_WAIT_POLICY) as the process reported them; None where it did not."""
    policy = next((line.removeprefix(POLICY_TAG) for line in reversed(stderr.splitlines())
                   if line.startswith(POLICY_TAG)), None)
    if command == "watch":
        found = WATCH_PLAN.search(stderr)
        return (int(found[1]), int(found[2]), policy) if found else (None, None, policy)
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
        return report.get("workers"), report.get("threads"), policy
    except (IndexError, ValueError, AttributeError):
        return None, None, policy


def run_command(side: Side, command: str, inputs: Path, work: Path, model: str | None) -> dict:
    """One timed command on fresh copies of the inputs, its folders removed afterwards."""
    src, out = work / "in", work / "out"
    shutil.copytree(inputs, src)  # copy2: the old mtimes travel, the backlog stays settled
    wall, stdout, stderr = run_sumctl(side, command_args(command, src, out, model))
    summaries, models = read_outputs(out)
    shutil.rmtree(work)
    expected = {p.stem for p in inputs.iterdir()}
    if set(summaries) != expected:
        raise SystemExit(f"{side.name}: sumctl {command} wrote summaries for {len(summaries)} of "
                         f"{len(expected)} files (missing: {sorted(expected - set(summaries))[:5]})")
    workers, threads, policy = ran_with(command, stdout, stderr)
    return {"wall_s": wall, "summaries": summaries, "models": models, "workers": workers,
            "threads": threads, "policy": policy}


def measure(sides: dict[str, Side], inputs: Path, tmp: Path, repeat: int,
            model: str | None) -> dict[str, dict[str, list[dict]]]:
    """runs[command][side]: one entry per round, the sides alternating within each command."""
    runs: dict[str, dict[str, list[dict]]] = {c: {name: [] for name in sides} for c in COMMANDS}
    for k in range(repeat):
        for command in COMMANDS:
            for side in sides.values():
                print(f"{side.name}: {command} ({k + 1}/{repeat}) ...", file=sys.stderr, flush=True)
                runs[command][side.name].append(
                    run_command(side, command, inputs, tmp / f"{command}-{side.name}-{k}", model))
    return runs


def figures(runs: list[dict], files: int) -> dict:
    """A command's rounds on one side as one row: the median wall time, the first round's plan."""
    wall = statistics.median(r["wall_s"] for r in runs)
    first = runs[0]
    return {"wall_s": wall, "files_per_s": files / wall, "wall_s_runs": [r["wall_s"] for r in runs],
            "workers": first["workers"], "threads": first["threads"], "policy": first["policy"],
            "summaries": first["summaries"], "models": set().union(*(r["models"] for r in runs))}


def identical(a: dict[str, str], b: dict[str, str]) -> int:
    return sum(a[stem].encode() == b.get(stem, "").encode() for stem in a)


def plan(row: dict) -> str:
    return f"{row['workers'] or '?'}x{row['threads'] or '?'}"


def print_report(rows: dict[str, dict[str, dict]], args, files: int) -> dict:
    """The table and the comparison lines; returns the ratios and identical counts by command."""
    print(f"\n`sumctl watch --once --workers {WORKERS} --threads {WATCH_THREADS}` and `sumctl batch "
          f"--workers {WORKERS}` on {files} DialogSum dialogues, {usable_cores()} usable cores, a fresh "
          f"process per run, median of {args.repeat}")
    print(f"{'command':<9}{'side':<9}{'ran with':>10}{'wall s':>9}{'files/s':>9}  OMP_WAIT_POLICY  model")
    for command, by_side in rows.items():
        for name, r in by_side.items():
            print(f"{command:<9}{name:<9}{plan(r):>10}{r['wall_s']:>9.2f}{r['files_per_s']:>9.2f}  "
                  f"{r['policy'] or '?':<15}  {', '.join(sorted(r['models']))}")
    compared = {}
    for command, by_side in rows.items():
        this, against = by_side[THIS], by_side[AGAINST]
        compared[command] = {"wall_ratio": ratio(this["wall_s"], against["wall_s"]),
                             "identical": identical(this["summaries"], against["summaries"])}
        if this["models"] != against["models"]:
            print(f"WARNING: {command}: the sides ran different models ({this['models']} vs "
                  f"{against['models']}): the ratio compares models as well as code")
    print(f"\nthis / {args.against}: "
          + ", ".join(f"{c} wall {fmt(v['wall_ratio'], '.2f')}x" for c, v in compared.items())
          + " (below 1: this tree is faster)")
    print("identical_summaries: "
          + ", ".join(f"{c} {v['identical']} of {files}" for c, v in compared.items()))
    return compared


def headline(rows: dict[str, dict[str, dict]], compared: dict, args, files: int) -> dict:
    models = sorted(set().union(*(r["models"] for by_side in rows.values() for r in by_side.values())))
    out = {"against": args.against, "files": files, "repeat": args.repeat, "cores": usable_cores(),
           "workers": WORKERS, "watch_threads_asked": WATCH_THREADS,
           "model": models[0] if len(models) == 1 else models}
    for command, by_side in rows.items():
        for name, r in by_side.items():
            key = f"{command}_{name}"
            out[f"{key}_wall_s"] = round(r["wall_s"], 3)
            out[f"{key}_wall_s_runs"] = [round(w, 3) for w in r["wall_s_runs"]]
            out[f"{key}_files_per_s"] = round(r["files_per_s"], 3)
            out[f"{key}_workers"], out[f"{key}_threads"] = r["workers"], r["threads"]
            out[f"{key}_omp_wait_policy"] = r["policy"]
        wall_ratio = compared[command]["wall_ratio"]
        out[f"{command}_wall_ratio"] = wall_ratio and round(wall_ratio, 3)
        out[f"{command}_identical_summaries"] = f"{compared[command]['identical']} of {files}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the earlier git revision to run side by side")
    parser.add_argument("--files", type=int, default=12, help="DialogSum dev dialogues")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (each: watch, then batch)")
    parser.add_argument("--model", help="a bundle folder instead of the embedded default")
    parser.add_argument("--data", type=Path, default=DIALOGSUM, help="a DialogSum .jsonl")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.files < 1:
        raise SystemExit("--repeat and --files must be at least 1")
    model = str(Path(args.model).resolve()) if args.model else None
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="sumctl-oversubscribed-") as tmp:
        tmp = Path(tmp)
        inputs = settled_inputs(args.data, args.files, tmp / "inputs")
        sides = build_sides(args.against, tmp)
        for side in sides.values():
            warm_up(side, tmp / f"warm-{side.name}", usable_cores(), model)
        runs = measure(sides, inputs, tmp, args.repeat, model)
    rows = {c: {name: figures(r, args.files) for name, r in by_side.items()} for c, by_side in runs.items()}
    compared = print_report(rows, args, args.files)
    print()
    print_headline(headline(rows, compared, args, args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
