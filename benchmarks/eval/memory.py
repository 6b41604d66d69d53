"""Peak memory of the current process, as `sumctl bench` and the speed benchmarks report it."""

from __future__ import annotations

import resource
import statistics
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM where Linux has it, not getrusage: Linux carries ru_maxrss
    over fork and exec, so a child started by a large parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def peak_rss_mb() -> float:
    """peak_rss_bytes in MiB, as the speed benchmarks print it."""
    return peak_rss_bytes() / 2**20


def peak_distribution(peaks: list[float]) -> dict:
    """Peaks of fresh processes as benchmarks report them: min, median, max (the worst case a
    user must plan for) and spread, max over min less one."""
    low, worst = min(peaks), max(peaks)
    return {"min": low, "median": statistics.median(peaks), "max": worst,
            "spread": round(worst / low - 1, 3) if low else None}
