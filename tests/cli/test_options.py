"""The CLI's choices are the runtime's tuples, and a summary's flags are one declaration: the
commands that summarize read and check them the same way."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sumctl.cli.main import cli
from sumctl.runtime.batch import ENGINES
from sumctl.runtime.bundle import GGUF_QUANT_TYPES, T5_MAX_INPUT_TOKENS, T5_QUANTIZATIONS
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.minutes import METHODS, TASK_STYLES
from sumctl.runtime.options import FIELDS, SummaryOptions
from sumctl.runtime.outputs import DEFAULT_FORMATS, OUTPUT_FORMATS
from sumctl.runtime.prompts import LENGTHS
from sumctl.runtime.transcript import FORMATS as INPUT_FORMATS

REPO = Path(__file__).resolve().parents[2]
SUMMARIZING = ("summarize", "watch", "batch")


def option(path: str, flag: str) -> click.Option:
    command = cli
    for name in path.split():
        command = command.commands[name]
    [found] = [p for p in command.params if flag in p.opts]
    return found


@pytest.mark.parametrize("path, flag, choices", [
    *[(c, "--length", LENGTHS) for c in (*SUMMARIZING, "ask", "bench")],
    *[(c, "--format", OUTPUT_FORMATS) for c in SUMMARIZING],
    *[(c, "--tasks", TASK_STYLES) for c in SUMMARIZING],
    *[(c, "--minutes-method", METHODS) for c in SUMMARIZING],
    *[(c, "--input-format", INPUT_FORMATS) for c in ("summarize", "ask")],
    ("batch", "--engine", ENGINES),
    ("export llama", "--quant", GGUF_QUANT_TYPES),
    ("export t5", "--quantize", T5_QUANTIZATIONS),
])
def test_every_choice_is_the_runtimes_own_tuple(path, flag, choices):
    assert tuple(option(path, flag).type.choices) == tuple(choices)


def test_the_t5_input_budget_is_the_formats_own():
    assert option("export t5", "--max-input-tokens").default == T5_MAX_INPUT_TOKENS


def test_a_summarys_flags_are_declared_once_and_give_every_field():
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "cli").glob("*.py")}
    for flag in ("--keep-fillers", "--max-bytes", "--minutes-method", "--max-summary-tokens"):
        declared = [p.name for p, text in sources.items() if re.search(rf'"{flag}"', text)]
        assert declared == ["options.py"], (flag, declared)
    for command in SUMMARIZING:
        names = {p.name for p in cli.commands[command].params}
        assert FIELDS <= names, (command, FIELDS - names)
        assert "options" not in names


@pytest.mark.parametrize("command", SUMMARIZING)
def test_the_commands_build_the_same_options_from_the_same_flags(command, monkeypatch):
    seen = []
    callback = cli.commands[command].callback
    monkeypatch.setattr(callback, "__wrapped__", lambda **kw: seen.append(kw["options"]))
    args = {"summarize": ["x.txt"], "watch": ["."], "batch": ["x.txt", "--out", "o"]}[command]
    cli.main([command, *args, "--length", "short", "--keep-fillers", "--minutes", "--tasks",
              "obsidian", "--format", "txt", "--max-bytes", "10", "--query", " Who?  "],
             standalone_mode=False)
    assert seen == [SummaryOptions(length="short", clean=False, minutes=True, tasks="obsidian",
                                   formats=("txt",), max_bytes=10, query="Who?")]
    # Minutes are the default; --summary-only is the plain summary, on every command.
    cli.main([command, *args], standalone_mode=False)
    cli.main([command, *args, "--summary-only"], standalone_mode=False)
    assert [o.minutes for o in seen[1:]] == [True, False]


def test_defaults_are_one_tuple_and_a_bad_field_is_one_line():
    assert SummaryOptions().formats == DEFAULT_FORMATS
    with pytest.raises(SumctlError, match=r"^unknown minutes method 'magic' \(use one of cues"):
        SummaryOptions(minutes_method="magic")
    with pytest.raises(SumctlError, match=r"^--max-bytes 0"):
        SummaryOptions(max_bytes=0)


def test_chapter_tokens_is_checked_and_keys_a_job_only_when_given():
    with pytest.raises(SumctlError, match=r"^--chapter-tokens 10: must be a whole number of at least 64"):
        SummaryOptions(chapter_tokens=10)
    assert "chapter_tokens" not in SummaryOptions().key_fields()  # older jobs' keys are unchanged
    assert SummaryOptions(chapter_tokens=1024).key_fields()["chapter_tokens"] == 1024
    result = CliRunner().invoke(cli, ["summarize", "x.txt", "--chapter-tokens", "10"])
    assert result.exit_code == 2 and "--chapter-tokens" in result.output and "Traceback" not in result.output
