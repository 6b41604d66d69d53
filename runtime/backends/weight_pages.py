"""Keep a model's mapped weight pages out of the resident set while nothing reads them.

ONNX Runtime maps a bundle's `weights.bin` into memory (one private mapping per large tensor)
rather than reading it: a weight page only becomes resident when a kernel first reads it, and it
stays resident afterwards. T5 runs in two phases that share no weights: the encoder, once per
document, then the decoder, once per token. Left alone, both phases' pages stay resident
together (FLAN-T5-Large int8: 341 MB of encoder pages next to 436 MB of decoder pages).

- `MappedWeights.release()` tells the kernel (madvise MADV_DONTNEED) that this process is done
  with a phase's pages. They stay in the OS page cache, so the next document maps them back with
  minor page faults and no disk read; they only leave this process's resident set. A mapping is
  released only while it holds no anonymous page: a page the process wrote to would lose its
  contents. ONNX Runtime never writes to its weights, so this check keeps a future change from
  turning into corruption rather than just less saving.
- `shedding()` does the same every few milliseconds while a phase runs, so that a phase that
  reads each weight once (the encoder, or a load that prepacks the decoder) never holds all of
  its pages at once.

Linux only (it reads /proc/self/maps and smaps); elsewhere it finds no mappings and does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from pathlib import Path
from typing import NamedTuple

from sumctl.runtime.backends.native_heap import libc

_MADV_DONTNEED = 4  # the same values on every Linux architecture
_MADV_PAGEOUT = 21  # Linux 5.4+; older kernels refuse it (EINVAL) and nothing is shed
SHED_INTERVAL_S = 0.01
READ_AHEAD_CHUNK = 4 * 2**20  # the kernel reads at most its read-ahead window (often 8 MiB) per call


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


def _read_ahead(file: Path) -> None:
    """Bring `file` back into the page cache on a helper thread (POSIX_FADV_WILLNEED, a window at
    a time: one call for the whole file reads only its first few MiB); cached pages are skipped.
    Where there is no posix_fadvise, the next load reads from disk instead."""
    if not hasattr(os, "posix_fadvise"):
        return

    def read():
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            return
        try:
            size = os.fstat(fd).st_size
            for offset in range(0, size, READ_AHEAD_CHUNK):
                os.posix_fadvise(fd, offset, READ_AHEAD_CHUNK, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)

    threading.Thread(target=read, name="sumctl-read-ahead", daemon=True).start()


def _advise(start: int, length: int, advice: int) -> bool:
    madvise = _madvise()
    return madvise is not None and madvise(start, length, advice) == 0


@functools.cache  # looked up once: release() runs before and after every encoder call
def _madvise():
    lib = libc()
    madvise = getattr(lib, "madvise", None) if lib is not None else None
    if madvise is None:
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def file_regions(file: Path) -> set[tuple[int, int]]:
    """This process's mappings of `file`, from /proc/self/maps: a line per mapping, cheap enough
    to read every few milliseconds (smaps, with residency, is twenty-odd lines per mapping)."""
    target = str(Path(file).resolve())
    regions = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == target:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    regions.add((start, end))
    except OSError:
        return set()
    return regions


@contextlib.contextmanager
def shedding(shed, interval: float = SHED_INTERVAL_S):
    """Call `shed()` every `interval` seconds on a helper thread while the block runs.

    For native work that releases the GIL (an ONNX Runtime run or session load): pages it read a
    moment ago leave the resident set while it reads the next ones, so the phase's weights are
    never all resident at once. A page shed too early is read back from the page cache (a minor
    fault), so the cost is a little time, never a wrong value."""
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            shed()

    helper = threading.Thread(target=loop, name="sumctl-weight-pages", daemon=True)
    helper.start()
    try:
        yield
    finally:
        stop.set()
        helper.join()


class MappedWeights:
    """The mappings of a weights file that one session made while it loaded."""

    def __init__(self, file: Path, regions: set[tuple[int, int]]):
        self.file = Path(file)
        self.regions = regions

    @classmethod
    def made_by(cls, file: Path, load, *, shed_while_loading: bool = False):
        """Run `load()` and remember which mappings of `file` appeared meanwhile.

        shed_while_loading: page the new mappings out every few milliseconds while `load()`
        runs, for a load that reads every weight once and then unmaps it (ONNX Runtime's
        prepacking). It advises MADV_PAGEOUT, not MADV_DONTNEED: the loader may unmap a region
        and reuse its addresses for fresh memory between this thread's read of the maps and
        its advice, and MADV_DONTNEED would then zero that memory, while MADV_PAGEOUT never loses
        data. Paged-out file pages also leave the page cache, so the file is then read back into
        it in the background (POSIX_FADV_WILLNEED), for the next process to find.

        Returns load()'s result and the MappedWeights."""
        before = set(mapped_regions(file))
        if not shed_while_loading:
            result = load()
        else:
            def shed():
                for start, end in file_regions(file) - before:
                    _advise(start, end - start, _MADV_PAGEOUT)

            with shedding(shed):
                result = load()
            _read_ahead(file)
        return result, cls(file, set(mapped_regions(file)) - before)

    def clean(self) -> "MappedWeights":
        """These mappings, less any that hold a page the process wrote (see release)."""
        return MappedWeights(self.file, {region for region, residency in mapped_regions(self.file).items()
                                         if region in self.regions and residency.anonymous_kib == 0})

    def shed(self) -> int:
        """release() without reading smaps, cheap enough for a helper thread: only for mappings
        just found clean (see clean) that stay mapped meanwhile, as during a run of their
        session. Returns the bytes of address range released."""
        return sum(end - start for start, end in self.regions if _advise(start, end - start, _MADV_DONTNEED))

    def resident_bytes(self) -> int:
        return sum(r.resident_kib for region, r in mapped_regions(self.file).items()
                   if region in self.regions) * 1024

    def release(self) -> int:
        """Drop these mappings' resident pages; returns the bytes of address range released."""
        return self.clean().shed() if self.regions else 0
