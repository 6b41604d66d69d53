"""What every command promises on bad input: a non-zero exit and one line on stderr, `Error: ...`,
naming the problem, with no traceback."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str, code: int | None = None) -> str:
    """The one error line of a finished `sumctl` process, checked to hold every fragment."""
    assert result.returncode != 0 if code is None else result.returncode == code, \
        (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
