"""The CPU this runs on and the flags that decide which kernels run: llama.cpp and ONNX Runtime
pick int8 and bf16 paths by them, `sumctl train` trains in bf16 where they allow it, and every
benchmark prints them beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The flags of interest this CPU has (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [f for f in FLAGS_OF_INTEREST if f in present]
    return []


def machine_line() -> str:
    flags = cpu_flags()
    return (f"CPU: {platform.processor() or platform.machine()}; flags: "
            f"{' '.join(flags) if flags else 'none of ' + ', '.join(FLAGS_OF_INTEREST)}")


def cpu_has_bf16() -> bool:
    """Whether bf16 matmuls run natively (AVX-512 BF16 or AMX); elsewhere torch emulates them,
    slower than fp32."""
    return any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as taskset or a container sets
    it), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_threads(workers: int, threads: int | None, cores: int | None = None) -> tuple[int, str | None]:
    """Threads per worker such that workers x threads fits the cores, and a warning when a
    user's --threads had to be lowered for that. Oversubscribed cores make every thread wait
    on the others (OpenMP and ONNX Runtime spin at their barriers), so fitting them is what
    keeps several workers faster than one."""
    cores = cores or usable_cores()
    fit = max(1, cores // workers)
    if threads is None:
        return fit, None
    if workers * threads > cores and threads > fit:
        return fit, (f"{workers} workers x {threads} threads is more than the {cores} cores; "
                     f"using {fit} thread(s) per worker")
    return threads, None


WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def plan_openmp_waits(workers: int, threads: int, cores: int | None = None) -> str | None:
    """Choose OpenMP's wait policy from the run's plan, before the first OpenMP runtime starts
    (it reads the variable once): sleeping waits (PASSIVE) only when workers x threads
    oversubscribe the cores; otherwise libgomp's default, which spins briefly at each barrier
    and then sleeps. A user's own setting is kept. Returns the policy in force (None: the
    default).

    A decode step of a 30-layer model crosses hundreds of barriers, and waking a sleeping thread
    at each one cost 2.2-2.6x in decode speed (SmolLM2-135M, 2 threads on 2 cores). But a
    spinning thread that the kernel deschedules, because the cores are oversubscribed, stalls
    every other thread at the next barrier: decoding slowed 30-fold that way.
    """
    policy = os.environ.get(WAIT_POLICY_ENV)
    if policy is None and workers * threads > (cores or usable_cores()):
        policy = os.environ[WAIT_POLICY_ENV] = "PASSIVE"
    return policy
