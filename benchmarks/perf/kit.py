"""What the perf scripts share: the memory read rate every bandwidth bound divides by, the fresh
process each measurement runs in, and the JSON headline each script ends with.

The read rate (`read_bandwidth_gbs`) is the one method behind every "bound" and "floor" the
scripts print (gguf_speed's bound on decode t/s, t5_speed's decode floor):
- a 1 GiB buffer of uint64 (well past any L3 cache: what a decode step streams comes from DRAM),
  written once, so that every page is resident before the first pass;
- cut into one part per thread, with the same number of threads the measured run uses (a decode
  step on N threads reads its weights with N threads);
- each pass starts those threads together, each reducing its part (numpy's bitwise_xor.reduce:
  one read of every byte, no writes, and it drops the GIL), and is timed from the first start to
  the last join;
- the rate is the buffer's bytes over the median pass time, in GB/s (10^9 bytes). The median, not
  the best: one pass on a shared VM once read 55 GB/s where the others read 32-34.
Before this module, gguf_speed took the best single-thread pass (numpy sum) and t5_speed the
median over its threads; figures measured then say which.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

from sumctl.runtime.machine import cpu_flags, machine_line
from sumctl.runtime.jsonout import strict_dumps

BANDWIDTH_BYTES = 2**30
BANDWIDTH_PASSES = 5


def read_bandwidth_gbs(threads: int, passes: int = BANDWIDTH_PASSES, nbytes: int = BANDWIDTH_BYTES) -> float:
    """The rate (GB/s) at which `threads` threads read memory: the median over `passes` passes of
    `nbytes` (the module's docstring has the method)."""
    import numpy as np

    if threads < 1 or passes < 1:
        raise ValueError(f"threads and passes must be at least 1 (got {threads} and {passes})")
    data = np.ones(max(threads, nbytes // 8), dtype=np.uint64)  # written, so every page is resident
    parts = np.array_split(data, threads)
    seconds = []
    for _ in range(passes):
        workers = [threading.Thread(target=np.bitwise_xor.reduce, args=(part,)) for part in parts]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds.append(time.perf_counter() - started)
    return data.nbytes / statistics.median(seconds) / 1e9


def bandwidth_method(threads: int, passes: int = BANDWIDTH_PASSES) -> str:
    """The method in words, for a script's output beside the rate it measured."""
    return f"median of {passes} passes, {threads} thread{'s' if threads != 1 else ''}, benchmarks/perf/kit.py"


def run_in_child(module: str, args: Iterable, *, label: str, env: dict | None = None) -> dict:
    """Run `python -m module args...` in a fresh process (so its peak RSS and thread pools are its
    own) and return the JSON object on the last line of its output. A failure stops the run with
    `label` and the end of the child's stderr."""
    cmd = [sys.executable, "-m", module, *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{label} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"{label} printed nothing:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def snake(name: str) -> str:
    """`name` as a headline key part: lower case, every run of other characters one underscore
    ("ROUGE-Lsum" -> "rouge_lsum", "gguf-Q8_0" -> "gguf_q8_0")."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def print_headline(headline: dict) -> None:
    """A script's last lines: the machine it ran on, then its headline figures as one JSON line.

    The kernels llama.cpp and ONNX Runtime run depend on the CPU flags: figures travel with them.
    Keys are snake_case (build them with `snake`), so that a figure reads the same in every script."""
    print(machine_line())
    headline["cpu_flags"] = cpu_flags()
    print(strict_dumps(headline))
