"""`sumctl train` and `sumctl train collect` as a user types them: real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from bench_fixtures import sumctl_cmd
from train_fixtures import train_records, write_jsonl
from cli_fixtures import assert_one_line_error

pytestmark = pytest.mark.timeout(600)


def run(*args: str, env_home: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_home is not None:
        env["SUMCTL_HOME"] = str(env_home)
    return subprocess.run([*sumctl_cmd(), *args], capture_output=True, text=True, timeout=timeout, env=env)



def test_train_runs_as_typed_and_prints_the_export_command(train_t5_base, train_jsonl, tmp_path):
    out = tmp_path / "ft"
    proc = run("train", "--base", str(train_t5_base), "--data", str(train_jsonl), "--out", str(out),
               "--max-steps", "2", "--batch-size", "3", "--max-input-tokens", "256", "--lengths", "medium",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"sumctl export t5 --model {out}" in proc.stdout
    assert (out / "model.safetensors").is_file() and (out / "training" / "report.json").is_file()
    # Running it again into the same folder would overwrite a finished model: refused.
    again = run("train", "--base", str(train_t5_base), "--data", str(train_jsonl), "--out", str(out))
    assert_one_line_error(again, str(out), "--resume")


@pytest.mark.parametrize("lines, fragments", [
    (['{"id": "a", "transcript": "Ann: hi there.", "reference": "Hi."}', '{"id": "b", "transcript": '],
     ["train.jsonl:2", "not valid JSON"]),
    (['{"id": "a", "transcript": "Ann: hi there."}'], ["train.jsonl:1", "'reference'"]),
    (['{"id": "a", "transcript": "Ann: hi.", "reference": "Hi.", "length": "huge"}'],
     ["train.jsonl:1", "'length' is 'huge'"]),
])
def test_malformed_data_is_one_clear_line(lines, fragments, train_t5_base, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    proc = run("train", "--base", str(train_t5_base), "--data", str(data), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "out").exists()


def test_too_little_data_and_overlong_references_are_clear_errors(train_t5_base, tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", train_records(3))
    proc = run("train", "--base", str(train_t5_base), "--data", str(small), "--out", str(tmp_path / "o1"))
    assert_one_line_error(proc, "small.jsonl", "only 3 usable training example")

    records = train_records(5)
    records[3]["reference"] = " ".join(["The team agreed on the budget."] * 30)
    long_ref = write_jsonl(tmp_path / "long.jsonl", records)
    proc = run("train", "--base", str(train_t5_base), "--data", str(long_ref), "--out", str(tmp_path / "o2"),
               "--default-length", "short", "--lengths", "short")
    assert_one_line_error(proc, "long.jsonl:4", "over the 64 a short summary may have", "--drop-overlong")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_missing_options_and_bad_lengths(train_jsonl, tmp_path):
    proc = run("train", "--data", str(train_jsonl))
    assert proc.returncode == 2 and "--base" in proc.stderr and "--out" in proc.stderr
    proc = run("train", "--base", "x", "--data", str(train_jsonl), "--out", str(tmp_path / "o"),
               "--lengths", "long,tiny")
    assert_one_line_error(proc, "--lengths")


@pytest.mark.slow
def test_collect_builds_references_through_a_live_endpoint_and_its_cache(bench_llama_server, tmp_path):
    transcripts = tmp_path / "transcripts.jsonl"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "standup.txt").write_text("Ann: The build is green.\nBob: Then we ship on Friday.\n")
    write_jsonl(transcripts, [
        {"id": "one", "transcript": "#Person1#: Can you send the report today?\n#Person2#: Yes, by five."},
        {"id": "two", "transcript": "t/standup.txt", "meta": {"team": "infra"}},
    ])
    out = tmp_path / "data" / "train.jsonl"
    cache = tmp_path / "cache"
    args = ["train", "collect", "--endpoint", bench_llama_server, "--model", "smollm2", "--data",
            str(transcripts), "--out", str(out), "--lengths", "short", "--cache", str(cache)]
    proc = run(*args, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 2 references for 2 transcripts" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["one", "two"]
    assert all(r["length"] == "short" and r["reference"].strip() for r in rows)
    assert rows[1]["transcript"] == "../t/standup.txt" and rows[1]["meta"]["team"] == "infra"
    assert rows[0]["meta"]["collected"]["model"] == "smollm2"

    # The file is valid training data, with the path still pointing at the transcript.
    from sumctl.exporters.train.data import load_records

    dataset = load_records(out)
    assert dataset.records[1].transcript.turns[0].speaker == "Ann"

    assert_one_line_error(run(*args), str(out), "--force")
    again = run(*args, "--force", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "0 API calls, 2 from the cache" in again.stdout
    assert [json.loads(line)["reference"] for line in out.read_text().splitlines()] == \
        [r["reference"] for r in rows]
