"""The edge runtime must not carry torch or transformers: they cost start-up time and memory."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "optimum")


def _check(code: str):
    probe = code + f"\nimport sys\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_importing_the_runtime_and_cli_pulls_in_no_torch():
    _check("import sumctl.runtime, sumctl.cli.main")


def test_a_summarize_run_pulls_in_no_torch(tmp_path):
    (tmp_path / "m.txt").write_text("Ann: We will ship on Friday after the export fix lands.\n"
                                    "Bob: I will write the release notes tomorrow morning.\n")
    _check(f"""
from sumctl.runtime.extractive import build_extractive_bundle
from sumctl.runtime import Summarizer
s = Summarizer(build_extractive_bundle({str(tmp_path / 'b')!r}))
assert s.summarize({str(tmp_path / 'm.txt')!r}).text
""")


@pytest.mark.parametrize("fixture", ["tiny_t5_bundle", "smollm2_q8_bundle"])
def test_neural_backends_pull_in_no_torch(request, fixture, tmp_path):
    bundle = request.getfixturevalue(fixture)
    path = getattr(bundle, "path", bundle)
    (tmp_path / "m.txt").write_text("Ann: We will ship on Friday after the export fix lands.\n")
    _check(f"""
from sumctl.runtime import Summarizer
assert Summarizer({str(path)!r}, max_summary_tokens=8).summarize({str(tmp_path / 'm.txt')!r}) is not None
""")
