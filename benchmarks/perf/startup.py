"""How long `sumctl --help` and `sumctl summarize --help` take to start, this tree against an
earlier revision, measured side by side in one run (alternating, so drift hits both alike).

    python -m sumctl.benchmarks.perf.startup --against 909c746 --repeat 20

Each side runs from its own source tree through PYTHONPATH (a `sumctl` folder of symlinks to
its cli/, runtime/, exporters/ and benchmarks/), in a fresh interpreter per run, with the same
installed dependencies. It also lists which heavy modules each side imports on the way (numpy,
the bench, rouge-score, psutil): the edge commands should import none of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "runtime", "exporters", "benchmarks")
COMMANDS = {"help": ["--help"], "summarize_help": ["summarize", "--help"]}
HEAVY = ("numpy", "sumctl.benchmarks", "rouge_score", "psutil", "matplotlib", "torch")

PROBE = """
import sys, time
t0 = time.perf_counter()
sys.argv = ["sumctl", *{args!r}]
from sumctl.cli.main import cli
try:
    cli()
except SystemExit:
    pass
elapsed = time.perf_counter() - t0
import sumctl.cli
heavy = sorted({{m.split(".")[0] if not m.startswith("sumctl.") else ".".join(m.split(".")[:2])
                 for m in sys.modules}} & set({heavy!r}))
sys.stderr.write(repr((elapsed, heavy, sumctl.cli.__path__[0])) + "\\n")
"""


def package_tree(source: Path, into: Path) -> Path:
    """A folder holding `sumctl/` whose subpackages are the source tree's folders."""
    pkg = into / "sumctl"
    pkg.mkdir(parents=True)
    for name in PACKAGES:
        (pkg / name).symlink_to(source / name, target_is_directory=True)
    return into


def checkout(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = into / "rev.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "src", filter="data")
    return into / "src"


def run_once(path_entry: Path, args: list[str]) -> tuple[float, float, list[str], str]:
    """(wall seconds of the whole process, seconds inside it, heavy modules, where cli came from)."""
    env = {**os.environ, "PYTHONPATH": str(path_entry), "PYTHONDONTWRITEBYTECODE": "1"}
    code = PROBE.format(args=args, heavy=HEAVY)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the probe failed ({path_entry}): {done.stderr.strip()[-400:]}")
    inner, heavy, origin = eval(done.stderr.strip().splitlines()[-1])  # our own probe's repr
    return wall, inner, heavy, origin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sumctl-startup-") as tmp:
        tmp = Path(tmp)
        sides = {"before": package_tree(checkout(args.against, tmp / "before"), tmp / "before-pkg"),
                 "after": package_tree(REPO, tmp / "after-pkg")}
        results: dict[str, dict[str, list]] = {c: {s: [] for s in sides} for c in COMMANDS}
        heavy: dict[str, dict[str, list[str]]] = {c: {} for c in COMMANDS}
        for side, entry in sides.items():  # warm the page cache and check where code comes from
            for command, cargs in COMMANDS.items():
                _, _, heavy[command][side], origin = run_once(entry, cargs)
                if not origin.startswith(str(entry)):
                    raise SystemExit(f"{side}: sumctl.cli came from {origin}, not {entry}")
        for _ in range(args.repeat):
            for command, cargs in COMMANDS.items():
                for side, entry in sides.items():
                    results[command][side].append(run_once(entry, cargs)[0])
    summary = {"against": args.against, "repeat": args.repeat}
    print(f"{'command':<24}{'before ms':>11}{'after ms':>10}{'after/before':>14}  heavy imports "
          "(before -> after)")
    for command in COMMANDS:
        before = statistics.median(results[command]["before"]) * 1000
        after = statistics.median(results[command]["after"]) * 1000
        shown = f"sumctl {' '.join(COMMANDS[command])}"
        print(f"{shown:<24}{before:>11.1f}{after:>10.1f}{after / before:>13.2f}x  "
              f"{', '.join(heavy[command]['before']) or '-'} -> {', '.join(heavy[command]['after']) or '-'}")
        summary[f"{command}_before_ms"] = round(before, 1)
        summary[f"{command}_after_ms"] = round(after, 1)
        summary[f"{command}_ratio"] = round(after / before, 3)
        summary[f"{command}_heavy_after"] = heavy[command]["after"]
    print_headline(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
