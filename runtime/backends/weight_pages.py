"""Hand back a model phase's weight pages between documents, so that peak memory is one phase's.

ONNX Runtime maps a bundle's `weights.bin` into memory (one read-only private mapping per large
tensor) rather than reading it: a weight page only becomes resident when a kernel first reads
it, and it stays resident afterwards. T5 runs in two phases that share no weights: the encoder,
once per document, then the decoder, once per token. Left alone, both phases' pages stay
resident together, so the process holds every weight at once (FLAN-T5-Large int8: 341 MB of
encoder pages next to 436 MB of decoder pages while it decodes).

`MappedWeights.release()` tells the kernel (madvise MADV_DONTNEED) that this process is done with
a phase's pages. They stay in the OS page cache, so the next document maps them back with minor
page faults and no disk read; they only leave this process's resident set. A mapping is released
only while it holds no anonymous page: a page the process wrote to would lose its contents, and
ONNX Runtime never writes to its weights, so this check keeps a future change from turning into
corruption rather than just less saving.

Linux only (it reads /proc/self/smaps); elsewhere it finds no mappings and does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import NamedTuple

from sumctl.runtime.backends.native_heap import libc

_MADV_DONTNEED = 4  # the same value on every Linux architecture


class Residency(NamedTuple):
    resident_kib: int  # pages of the mapping in this process's RSS
    anonymous_kib: int  # of those, pages the process wrote to (no longer the file's)


def mapped_regions(file: Path) -> dict[tuple[int, int], Residency]:
    """This process's mappings of `file`: (start, end) address -> how much of it is resident."""
    target = str(Path(file).resolve())
    regions: dict[tuple[int, int], Residency] = {}
    current = None
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                head = line.split(maxsplit=5)
                if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                    current = None
                    if len(head) == 6 and head[5].rstrip("\n") == target:
                        start, end = (int(x, 16) for x in head[0].split("-"))
                        current = (start, end)
                        regions[current] = Residency(0, 0)
                elif current is not None and head and head[0] == "Rss:":
                    regions[current] = regions[current]._replace(resident_kib=int(head[1]))
                elif current is not None and head and head[0] == "Anonymous:":
                    regions[current] = regions[current]._replace(anonymous_kib=int(head[1]))
    except OSError:
        return {}
    return regions


@functools.cache  # looked up once: release() runs before and after every encoder call
def _madvise():
    lib = libc()
    madvise = getattr(lib, "madvise", None) if lib is not None else None
    if madvise is None:
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


class MappedWeights:
    """The mappings of a weights file that one session made while it loaded."""

    def __init__(self, file: Path, regions: set[tuple[int, int]]):
        self.file = Path(file)
        self.regions = regions

    @classmethod
    def made_by(cls, file: Path, load):
        """Run `load()` and remember which mappings of `file` appeared meanwhile.

        Returns load()'s result and the MappedWeights."""
        before = set(mapped_regions(file))
        result = load()
        return result, cls(file, set(mapped_regions(file)) - before)

    def resident_bytes(self) -> int:
        return sum(r.resident_kib for region, r in mapped_regions(self.file).items()
                   if region in self.regions) * 1024

    def release(self) -> int:
        """Drop these mappings' resident pages; returns the bytes of address range released."""
        if not self.regions:
            return 0
        madvise = _madvise()
        if madvise is None:
            return 0
        released = 0
        for (start, end), residency in mapped_regions(self.file).items():
            if (start, end) in self.regions and residency.anonymous_kib == 0:
                if madvise(start, end - start, _MADV_DONTNEED) == 0:
                    released += end - start
        return released
