"""Peak RSS as the benchmarks report it: a child's own, not the peak of the parent it forked from."""

from __future__ import annotations

import os
import sys

import pytest

from sumctl.benchmarks.eval.memory import peak_rss_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork + exec carry-over is Linux's")

HELD = 400 * 2**20


def test_a_child_forked_from_a_large_parent_reports_its_own_peak(tmp_path):
    held = bytearray(os.urandom(1024)) * (HELD // 1024)  # resident: every page written
    assert peak_rss_bytes() > HELD
    out = tmp_path / "peak"
    code = ("import sys; from sumctl.benchmarks.eval.memory import peak_rss_bytes; "
            f"open({str(out)!r}, 'w').write(str(peak_rss_bytes()))")
    pid = os.fork()  # a real fork (subprocess may use vfork, which copies no memory)
    if pid == 0:
        try:
            os.execv(sys.executable, [sys.executable, "-c", code])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_peak = int(out.read_text())
    # getrusage would say at least HELD here: Linux keeps the pre-exec copy's high-water mark.
    assert 0 < child_peak < HELD / 2, child_peak
    del held
