"""Handing weight pages back to the OS: real mappings, real page faults, read from /proc."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from sumctl.runtime.backends.weight_pages import MappedWeights, mapped_regions

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")

PAGES = 64


def _weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * (PAGES * mmap.PAGESIZE // 256))
    return path


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
