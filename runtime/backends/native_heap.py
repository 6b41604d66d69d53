"""Keep glibc's heap from making a process's peak memory a matter of luck.

Measured with benchmarks/perf/t5_memory.py (FLAN-T5-Large int8 on ONNX Runtime, 2 threads, fresh
processes one after another): with glibc's defaults the peak RSS read 704 to 1374 MB on identical
runs. The mapped weight pages, and the page cache folios behind them, were the same every time;
what moved was anonymous memory, all of it in the main malloc heap ([heap]: 210 MB in a good
run, 482 MB in a bad one). glibc serves a block from mmap (handed back to the OS on free) only
above its mmap threshold, and it raises that threshold to the size of every mmapped block freed,
up to 32 MB. Once ONNX Runtime has freed a few large buffers, the next ones come from the heap
instead, where a small block still in use above them keeps the whole span resident; whether that
happens depends on the order in which ONNX Runtime's threads allocate and free.

`steady_heap()` fixes the threshold (mallopt M_MMAP_THRESHOLD, which also turns the raising off)
for the whole process, so buffers of 1 MiB and more always come from mmap and always go back.
Measured side by side: peak 689-691 MB instead of 710-1323 MB, and no slower. 1 MiB rather than
glibc's starting 128 KiB: at 128 KiB a document took 4.1-4.7 s against 3.6-3.8 s, smaller
buffers being mapped and unmapped at every step. glibc only: elsewhere (musl, macOS, Windows)
it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 20


@functools.cache
def libc():
    """The C library, loaded once; None where ctypes finds none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


@functools.cache
def _glibc():
    lib = libc()
    if lib is None or not hasattr(lib, "gnu_get_libc_version"):  # musl and macOS lack it
        return None
    lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.mallopt.restype = ctypes.c_int
    return lib


def steady_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes; True if it took effect.

    A user's own MALLOC_MMAP_THRESHOLD_ wins: they may know their workload better."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1)
