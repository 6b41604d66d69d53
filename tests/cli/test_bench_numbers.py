"""Issue 27, numbers read from files: `sumctl bench` takes a number from a cloud outputs file or a
data file only if it is finite and in range; anything else is one line naming the file and the
line, before any work. And what it writes is strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from watch_fixtures import one_line_error, run

DATA = [
    {"id": "a", "transcript": "Ann: We agreed to ship the release on Friday after the tests pass.\n"
                              "Bob: I will fix the login bug first.",
     "reference": "They ship on Friday; Bob fixes the login bug."},
    {"id": "b", "transcript": "Cat: The budget review moves to next week.\n"
                              "Dan: I will send the invoice to the vendor.",
     "reference": "The budget review moves; Dan sends the invoice."},
]


def reject(name):
    raise ValueError(f"{name} in JSON")


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in DATA))
    return path


def cloud_file(tmp_path: Path, first_line_fields: str) -> Path:
    path = tmp_path / "cloud.jsonl"
    path.write_text('{"id": "a", "summary": "They ship Friday."}\n'
                    f'{{"id": "b", "summary": "Dan sends the invoice.", {first_line_fields}}}\n')
    return path


@pytest.mark.parametrize("fields, says", [
    ('"prompt_tokens": 1e999', "1e999 is too large"),         # the issue's: a traceback
    ('"latency_s": Infinity', "Infinity is not a number"),    # the issue's: NaN in report.json
    ('"latency_s": NaN', "NaN is not a number"),
    ('"completion_tokens": -Infinity', "-Infinity"),
    ('"output_tokens": 1e400', "1e400 is too large"),
    ('"prompt_tokens": ' + "9" * 5000, "5000 digits"),        # a ValueError from int() before
    ('"prompt_tokens": 1e300', "'prompt_tokens' must be a non-negative number"),  # finite, absurd
    ('"latency_s": 1e12', "'latency_s' must be a non-negative number"),
    ('"latency_s": true', "'latency_s' must be a non-negative number"),
    ('"prompt_tokens": "12"', "'prompt_tokens' must be a non-negative number"),
], ids=["1e999", "Infinity", "NaN", "-Infinity", "1e400", "5000-digits", "1e300-tokens",
        "1e12-seconds", "true", "string"])
def test_a_cloud_file_number_that_is_not_finite_or_in_range_is_one_line(
        tmp_path, data, bench_extractive_bundle, fields, says):
    cloud = cloud_file(tmp_path, fields)
    result = run("bench", "--data", data, "--model", bench_extractive_bundle,
                 "--cloud", f"gpt-4o={cloud}", "--out", tmp_path / "out")
    one_line_error(result, f"{cloud}:2:", says)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", ['"weight": NaN', '"weight": 1e999', '"tags": [Infinity]'])
def test_a_data_file_number_that_is_not_finite_is_one_line(tmp_path, data,
                                                           bench_extractive_bundle, extra):
    lines = data.read_text().splitlines()
    lines[1] = lines[1][:-1] + ", " + extra + "}"
    data.write_text("\n".join(lines) + "\n")
    result = run("bench", "--data", data, "--model", bench_extractive_bundle,
                 "--out", tmp_path / "out")
    one_line_error(result, f"{data}:2:", "finite number")


def test_a_bench_report_is_strict_json(tmp_path, data, bench_extractive_bundle):
    cloud = cloud_file(tmp_path, '"latency_s": 0.5, "prompt_tokens": 100, "completion_tokens": 9')
    result = run("bench", "--data", data, "--model", bench_extractive_bundle,
                 "--cloud", f"gpt-4o={cloud}", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=reject)
    assert [s["name"] for s in report["systems"]][-1] == "gpt-4o"
