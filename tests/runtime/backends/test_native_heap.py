"""The T5 runtime's fixed mmap threshold, seen by glibc itself (mallinfo2) in fresh processes.

The memory it saves (a peak that swung between 0.7 and 1.4 GB on identical FLAN-T5-Large runs,
now the same 690 MB five times in a row) is measured by benchmarks/perf/t5_memory.py. Here the
mechanism: after glibc has freed a large mmapped block, a 2 MiB buffer must still come from
mmap (and so go back to the OS when freed), not from the heap, where it can stay resident.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the mmap threshold is glibc's")

PROBE = r"""
import ctypes, sys

if sys.argv[1] != "-":
    from sumctl.runtime.bundle import load_bundle
    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    backend = OnnxT5Backend(load_bundle(sys.argv[1], verify=False), threads=2)
    backend.generate_ids([[5, 6, 7, 8, 9, 10, 1]] * 3, max_new_tokens=12)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
libc.free(libc.malloc(8 << 20))  # glibc's own threshold now rises past 8 MiB
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)  # 1: the block was mmapped; 0: it came from the heap
libc.free(block)
"""


def _mmapped_blocks(bundle, **env) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"} | env
    result = subprocess.run([sys.executable, "-c", PROBE, str(bundle)], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


def test_after_the_t5_runtime_loads_large_buffers_always_come_from_mmap(tiny_t5_int8_bundle):
    assert _mmapped_blocks(tiny_t5_int8_bundle) == 1


def test_glibcs_own_rising_threshold_would_put_them_in_the_heap():
    # The contrast that makes the test above mean something: without the runtime, the same
    # allocations leave the 2 MiB buffer in the heap.
    assert _mmapped_blocks("-") == 0


def test_a_users_own_threshold_wins(tiny_t5_int8_bundle):
    # MALLOC_MMAP_THRESHOLD_ (glibc's environment knob) at 32 MiB: the runtime leaves it alone.
    assert _mmapped_blocks(tiny_t5_int8_bundle, MALLOC_MMAP_THRESHOLD_=str(32 << 20)) == 0
