"""Handing weight pages back to the OS: real mappings, real page faults, read from /proc."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

import time

from sumctl.runtime.backends.weight_pages import MappedWeights, mapped_regions, shedding

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")

PAGES = 64


def _weights_file(tmp_path: Path, pages: int = PAGES) -> Path:
    path = tmp_path / "weights.bin"
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * (pages * mmap.PAGESIZE // 256))
        f.flush()
        os.fsync(f.fileno())  # the page cache then holds clean pages, as for an exported bundle
    return path


def _resident(path: Path) -> int:
    return sum(r.resident_kib for r in mapped_regions(path).values()) * 1024


def _cached_pages(path: Path) -> int:
    """How many of the file's pages the page cache holds (mincore on a fresh mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        anchor = ctypes.c_char.from_buffer(mapping)
        pages = -(-len(mapping) // mmap.PAGESIZE)
        vector = (ctypes.c_ubyte * pages)()
        assert libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(len(mapping)), vector) == 0
        del anchor
        return sum(v & 1 for v in vector)
    finally:
        mapping.close()


def _read_slowly(mapping, path: Path, chunk_pages: int = 64) -> tuple[bytes, int]:
    """Read every page in chunks, pausing between them as a native loader would (releasing the
    GIL); returns the bytes and the most of the file that was ever resident."""
    chunk, most, data = chunk_pages * mmap.PAGESIZE, 0, []
    for start in range(0, len(mapping), chunk):
        data.append(mapping[start:start + chunk])
        most = max(most, _resident(path))
        time.sleep(0.003)
    return b"".join(data), most


def _map(path: Path) -> mmap.mmap:
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # private, as ONNX Runtime maps


def test_release_drops_the_pages_and_they_read_back_unchanged(tmp_path):
    path = _weights_file(tmp_path)
    mapping, pages = MappedWeights.made_by(path, lambda: _map(path))
    try:
        assert len(pages.regions) == 1
        assert pages.resident_bytes() == 0  # mapped, not yet read
        before = bytes(mapping[:])  # touch every page
        assert pages.resident_bytes() == PAGES * mmap.PAGESIZE

        assert pages.release() == PAGES * mmap.PAGESIZE
        assert pages.resident_bytes() == 0
        assert bytes(mapping[:]) == before == path.read_bytes()
    finally:
        mapping.close()


def test_a_mapping_the_process_wrote_to_is_kept(tmp_path):
    path = _weights_file(tmp_path)
    mapping, pages = MappedWeights.made_by(path, lambda: _map(path))
    try:
        mapping[0] = 7  # a private copy of page 0: dropping it would lose the 7
        bytes(mapping[:])
        assert next(iter(mapped_regions(path).values())).anonymous_kib > 0

        assert pages.release() == 0
        assert mapping[0] == 7
        assert pages.resident_bytes() == PAGES * mmap.PAGESIZE
    finally:
        mapping.close()


def test_only_the_mappings_made_by_the_load_are_released(tmp_path):
    path = _weights_file(tmp_path)
    first = _map(path)
    second, pages = MappedWeights.made_by(path, lambda: _map(path))
    try:
        bytes(first[:]), bytes(second[:])
        pages.release()
        resident = {region: r.resident_kib for region, r in mapped_regions(path).items()}
        assert sorted(resident.values()) == [0, PAGES * mmap.PAGESIZE // 1024]
        assert pages.resident_bytes() == 0
    finally:
        first.close()
        second.close()


def test_nothing_mapped_is_nothing_released(tmp_path):
    path = _weights_file(tmp_path)
    _, pages = MappedWeights.made_by(path, lambda: None)
    assert pages.regions == set()
    assert pages.release() == 0 and pages.resident_bytes() == 0
    assert mapped_regions(tmp_path / "absent.bin") == {}


SHED_PAGES = 4096  # 16 MiB: a fault may map a whole large folio (up to 2 MiB) at once


def test_shedding_keeps_a_phase_from_holding_all_its_pages_and_reads_stay_right(tmp_path):
    path = _weights_file(tmp_path, SHED_PAGES)
    mapping, pages = MappedWeights.made_by(path, lambda: _map(path))
    try:
        whole = SHED_PAGES * mmap.PAGESIZE
        _, most_alone = _read_slowly(mapping, path)
        assert most_alone == whole  # left alone, every page read stays resident
        pages.release()
        with shedding(pages.clean().shed, interval=0.002):
            data, most = _read_slowly(mapping, path)
        assert data == path.read_bytes()
        assert most < whole // 2
    finally:
        mapping.close()


def test_clean_leaves_out_a_mapping_the_process_wrote_to(tmp_path):
    path = _weights_file(tmp_path)
    written, written_pages = MappedWeights.made_by(path, lambda: _map(path))
    untouched, untouched_pages = MappedWeights.made_by(path, lambda: _map(path))
    try:
        written[0] = 7
        assert written_pages.clean().regions == set()
        assert untouched_pages.clean().regions == untouched_pages.regions
        with shedding(written_pages.clean().shed, interval=0.001):
            time.sleep(0.01)
        assert written[0] == 7
    finally:
        written.close()
        untouched.close()


def test_shedding_while_loading_pages_the_new_mappings_out_and_loses_no_write(tmp_path):
    path = _weights_file(tmp_path, SHED_PAGES)
    seen = {}

    def load():  # a loader that maps the weights, writes one page and reads every page once
        mapping = _map(path)
        mapping[0] = 7
        seen["data"], seen["most"] = _read_slowly(mapping, path)
        return mapping

    mapping, pages = MappedWeights.made_by(path, load, shed_while_loading=True)
    try:
        whole = SHED_PAGES * mmap.PAGESIZE
        assert len(pages.regions) == 1
        assert seen["most"] < whole // 2, "MADV_PAGEOUT (Linux 5.4+) had no effect"
        # Paged out, the file left the page cache too; it is read back in for the next process.
        deadline = time.monotonic() + 10
        while _cached_pages(path) < SHED_PAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cached_pages(path) == SHED_PAGES
        assert seen["data"][1:] == path.read_bytes()[1:] and mapping[0] == 7
    finally:
        mapping.close()
