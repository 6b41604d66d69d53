"""`sumctl batch` without Ray: job keys, sources and DEST (paths and file:// URIs), the local
engine, exactly once across reruns and a killed driver. The Ray engine is in test_ray_engine.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sumctl.runtime.batch import BatchOptions, run_batch
from sumctl.runtime.options import SummaryOptions
from sumctl.runtime.batch.storage import list_sources
from sumctl.runtime.errors import InputError, SumctlError

from batch_fixtures import content, done_records, output_files, temporaries, write_dialogues
from watch_fixtures import wait_until


def batch_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "sumctl.cli", "batch", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# --- the job key ---------------------------------------------------------------------------------


def options(**fields) -> BatchOptions:
    return BatchOptions("/b", "m" * 64, SummaryOptions(**fields))


def test_the_key_is_content_bundle_length_and_query_and_only_set_options_add_to_it():
    base = options(minutes=False)  # the plain summary, whose key has every option neutral
    assert base.key_fields() == {"model": "m" * 64, "length": "medium", "query": None}
    key = base.job_key("a" * 64)
    assert key != base.job_key("b" * 64)  # the content
    assert key != BatchOptions("/b", "n" * 64, SummaryOptions(minutes=False)).job_key("a" * 64)  # the bundle
    assert key != options(length="short", minutes=False).job_key("a" * 64)
    asked = options(query="  What was  decided? ", minutes=False)
    assert asked.summary.query == "What was decided?" and asked.job_key("a" * 64) != key
    # Where the bundle is and how many threads read it change no output: same key.
    assert BatchOptions("/elsewhere", "m" * 64, SummaryOptions(minutes=False), threads=3).job_key("a" * 64) == key
    # Options left at their defaults do not enter the key, so adding one keeps old keys valid.
    assert options(formats=("json", "md"), minutes=False).job_key("a" * 64) == key
    kept = options(clean=False, minutes=False)
    assert kept.key_fields()["clean"] is False and kept.job_key("a" * 64) != key
    assert BatchOptions.from_dict(kept.to_dict()) == kept
    # A task style changes nothing written without minutes.
    assert options(tasks="obsidian", minutes=False).job_key("a" * 64) == key
    # Minutes, the default, are another output of the same content.
    assert options().job_key("a" * 64) != key


# Keys that c9b9600 wrote into done-records (computed by its BatchOptions.job_key, before
# SummaryOptions): a rerun after an upgrade must find them, or it would redo every transcript.
# Its default was the plain summary, spelled `minutes=False` since minutes became the default.
RECORDED_KEYS = [
    ({"minutes": False}, "57ac777e36a8af729831ce4ecef1bbaaf13a27a584ac1bde54c483811b9dace7"),
    ({"length": "short", "minutes": False}, "d09c2488de6d56ef6e88b97618218bf697b34661a6770d4aeb01ff1870708419"),
    ({"query": "What was decided?", "minutes": False},
     "ca8317b51a681ce4f0113ae56677018dcdd08829bc36ab15575e9da0628f2319"),
    ({"clean": False, "minutes": False}, "6d6adf75777aa2101d5b43a79ae6044c027eb2084307e1efd670b26d72077be3"),
    ({"minutes": True}, "0eb360c9735f9e157ac1376f0b26ae73019d1828d89e0eccc2da8546d6e2b30c"),
    ({}, "0eb360c9735f9e157ac1376f0b26ae73019d1828d89e0eccc2da8546d6e2b30c"),  # the new default
    ({"minutes": True, "tasks": "obsidian", "minutes_method": "cues"},
     "42eea8c55921498176868e28d0e2de82fba520f9089e75af5467281b9e8ca7aa"),
    ({"formats": ("md", "json", "txt"), "minutes": False},
     "d9501c2d84cd83166fb95ac32043987dcd92cb605ea5424d16d7485fc9cf0bcd"),
    ({"num_beams": 4, "max_summary_tokens": 100, "length": "long", "minutes": False},
     "cbc245ba69e73900eeb983025fe1838c1788c8d95c6216d76d1f3b0a43396d3a"),
]


@pytest.mark.parametrize("fields, recorded", RECORDED_KEYS)
def test_done_records_written_before_summary_options_keep_their_keys(fields, recorded):
    assert options(**fields).job_key("a" * 64) == recorded


@pytest.mark.parametrize("bad, fragment", [({"minutes_method": "magic"}, "unknown minutes method 'magic'"),
                                           ({"tasks": "x"}, "unknown task style 'x'"),
                                           ({"formats": ("pdf",)}, "unknown output format 'pdf'"),
                                           ({"length": "tiny"}, "unknown summary length 'tiny'"),
                                           ({"num_beams": 0}, "--beams 0"),
                                           ({"colour": "red"}, "unknown summary option 'colour'")])
def test_a_bad_option_is_refused_before_any_source_is_listed(tmp_path, bad, fragment):
    # A source that cannot be listed, and no model: only the option can be what is refused.
    with pytest.raises(SumctlError, match=re.escape(fragment)):
        run_batch([str(tmp_path / "missing" / "*.txt")], tmp_path / "out", model=str(tmp_path / "no-model"),
                  **bad)
    assert not (tmp_path / "out").exists()


# --- sources -------------------------------------------------------------------------------------


def test_sources_are_files_folders_globs_and_uris_each_once(tmp_path, dialogsum_file):
    write_dialogues(dialogsum_file, tmp_path / "in", 4, sub={2: "sub", 3: "sub/deeper"})
    (tmp_path / "in" / ".hidden.txt").write_text("#Person1#: hidden\n")
    (tmp_path / "in" / "notes.docx").write_text("not a transcript")
    flat = [Path(s.path).name for s in list_sources([str(tmp_path / "in")])]
    assert flat == ["dev_0.txt", "dev_1.txt"]
    deep = list_sources([str(tmp_path / "in")], recursive=True)
    assert [Path(s.path).relative_to(tmp_path / "in").as_posix() for s in deep] == [
        "dev_0.txt", "dev_1.txt", "sub/dev_2.txt", "sub/deeper/dev_3.txt"]
    both = list_sources([str(tmp_path / "in" / "dev_1.txt"), str(tmp_path / "in" / "*.txt")])
    assert [Path(s.path).name for s in both] == ["dev_1.txt", "dev_0.txt"]
    uri = list_sources([(tmp_path / "in").as_uri()], recursive=True)
    assert [s.name for s in uri] == [(tmp_path / "in" / rel).as_uri() for rel in
                                     ("dev_0.txt", "dev_1.txt", "sub/deeper/dev_3.txt", "sub/dev_2.txt")]
    with pytest.raises(InputError, match="no such file"):
        list_sources([str(tmp_path / "absent")])
    with pytest.raises(InputError, match="no transcripts"):
        list_sources([str(tmp_path / "in" / "*.vtt")])


# --- the local engine ----------------------------------------------------------------------------


def test_local_engine_mirrors_the_tree_and_writes_what_summarize_writes(tmp_path, dialogsum_file,
                                                                         extractive_bundle_dir):
    files = write_dialogues(dialogsum_file, tmp_path / "in", 6, sub={4: "sub", 5: "sub"})
    out = tmp_path / "out"
    report = run_batch([tmp_path / "in"], out, model=str(extractive_bundle_dir), recursive=True,
                       workers=2, formats=("md", "json", "txt"))
    assert (report.summary()["summarized"], report.failed, report.workers) == (6, 0, 2)
    got = output_files(out)
    assert sorted(got) == sorted(
        f"{'sub/' if p.parent.name == 'sub' else ''}{p.stem}.summary.{fmt}"
        for p in files for fmt in ("json", "md", "txt"))
    records = done_records(out)
    assert len(records) == 6 and {r["status"] for r in records} == {"done"}
    # `sumctl summarize` on the same files writes the same summaries.
    summarize = subprocess.run(
        [sys.executable, "-m", "sumctl.cli", "summarize", *map(str, files[:4]), "--model",
         str(extractive_bundle_dir), "--out", str(tmp_path / "s"), "-f", "md", "-f", "txt", "-q"],
        capture_output=True, text=True, timeout=300)
    assert summarize.returncode == 0, summarize.stderr
    for name, path in output_files(tmp_path / "s").items():
        assert content(got[name]) == content(path), name
        if name.endswith(".txt"):
            assert got[name].read_bytes() == path.read_bytes()


def test_a_rerun_skips_every_done_job_without_loading_the_model(tmp_path, dialogsum_file,
                                                                  extractive_bundle_dir):
    write_dialogues(dialogsum_file, tmp_path / "in", 5)
    (tmp_path / "in" / "empty.txt").write_text("")
    out = tmp_path / "out"
    first = run_batch([tmp_path / "in"], out, model=str(extractive_bundle_dir), workers=1)
    assert (first.summary()["summarized"], first.failed) == (5, 1)
    before = {name: p.read_bytes() for name, p in output_files(out).items()}
    # The same bundle (the same manifest, so the same job keys) with a corrupt model file: any
    # load would verify it and fail.
    broken = tmp_path / "broken"
    shutil.copytree(extractive_bundle_dir, broken)
    (broken / "extractive.json").write_text("{}")
    started = time.perf_counter()
    again = run_batch([tmp_path / "in"], out, model=str(broken))
    assert time.perf_counter() - started < 5
    assert again.summary() | {"elapsed_s": 0} == again.summary() | {
        "documents": 6, "summarized": 0, "failed": 0, "skipped_done": 6, "elapsed_s": 0}
    assert again.workers == 0
    assert {name: p.read_bytes() for name, p in output_files(out).items()} == before
    # A deleted output makes its job run again; --retry-failed retries the failure.
    (out / "dev_0.summary.md").unlink()
    third = run_batch([tmp_path / "in"], out, model=str(extractive_bundle_dir), retry_failed=True)
    assert (third.count("summarized"), third.failed, third.count("skipped_done")) == (1, 1, 4)
    assert sorted(output_files(out)) == sorted(before) and len(done_records(out)) == 6


def test_uris_for_source_and_dest_write_the_same_summaries(tmp_path, dialogsum_file,
                                                           extractive_bundle_dir):
    write_dialogues(dialogsum_file, tmp_path / "in", 4, sub={3: "sub"})
    (tmp_path / "in" / "bad.json").write_text("[{\"speaker\": ")
    by_path = run_batch([tmp_path / "in"], tmp_path / "a", model=str(extractive_bundle_dir),
                        recursive=True, workers=1)
    dest = (tmp_path / "b").as_uri()
    by_uri = run_batch([(tmp_path / "in").as_uri()], dest, model=str(extractive_bundle_dir),
                       recursive=True, workers=1)
    assert by_uri.summary()["summarized"] == by_path.summary()["summarized"] == 4
    assert by_uri.failed == by_path.failed == 1
    a, b = output_files(tmp_path / "a"), output_files(tmp_path / "b")
    assert a.keys() == b.keys() and "bad.error.txt" in b and "sub/dev_3.summary.md" in b
    for name in a:
        if name.endswith(".json"):
            ra, rb = content(a[name]), content(b[name])
            transcript = tmp_path / "in" / (name.split(".summary.")[0] + ".txt")
            assert rb["source"] == rb["source_key"] == transcript.as_uri()
            assert {k: v for k, v in ra.items() if not k.startswith("source")} == \
                   {k: v for k, v in rb.items() if not k.startswith("source")}
    assert len(done_records(tmp_path / "b")) == 5 and not temporaries(tmp_path / "b")
    again = run_batch([(tmp_path / "in").as_uri()], dest, model=str(extractive_bundle_dir),
                      recursive=True)
    assert again.count("skipped_done") == 5


def test_outputs_beside_the_transcripts_are_not_read_back_as_transcripts(tmp_path, dialogsum_file,
                                                                         extractive_bundle_dir):
    write_dialogues(dialogsum_file, tmp_path / "in", 3)
    for _ in range(2):
        report = run_batch([tmp_path / "in"], tmp_path / "in", model=str(extractive_bundle_dir),
                           formats=("txt",))
        assert report.summary()["documents"] == 3 and report.failed == 0
    assert sorted(p.name for p in (tmp_path / "in").iterdir() if not p.name.startswith(".")) == sorted(
        [f"dev_{i}.{ext}" for i in range(3) for ext in ("txt", "summary.txt", "summary.json")])


def test_a_killed_driver_then_a_rerun_gives_every_output_once(tmp_path, dialogsum_file,
                                                              slow_bundle_dir):
    write_dialogues(dialogsum_file, tmp_path / "in", 24)
    out = tmp_path / "out"
    proc = batch_cli(tmp_path / "in", "--out", out, "--model", slow_bundle_dir, "--workers", "2", "-q")
    try:
        wait_until(lambda: len(done_records(out)) >= 3 or proc.poll() is not None, 120,
                   "the first done-records")
        killed_at = len(done_records(out))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert killed_at < 24, "the batch finished before it could be killed"
    rerun = batch_cli(tmp_path / "in", "--out", out, "--model", slow_bundle_dir, "-q")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["documents"] == 24 and summary["failed"] == 0
    assert summary["skipped_done"] >= killed_at
    names = sorted(output_files(out))
    assert names == sorted(f"dev_{i}.summary.{fmt}" for i in range(24) for fmt in ("json", "md"))
    assert len(done_records(out)) == 24 and not temporaries(out)


def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, extractive_bundle_dir):
    (tmp_path / "m.txt").write_text("Ann: We ship on Friday.\n")
    code = ("import sys; sys.modules['ray'] = None\n"
            "from sumctl.cli.main import cli\n"
            "cli(['batch', sys.argv[1], '--out', sys.argv[2], '--engine', 'ray'], prog_name='sumctl')")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.txt"), str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --engine ray needs Ray Data: pip install 'sumctl[ray]'"]
    assert not (tmp_path / "o").exists()


def test_a_bundle_that_does_not_load_on_the_workers_stops_the_batch_in_one_line(
        tmp_path, dialogsum_file, extractive_bundle_dir):
    from sumctl.runtime.errors import SumctlError

    write_dialogues(dialogsum_file, tmp_path / "in", 3)
    broken = tmp_path / "broken"
    shutil.copytree(extractive_bundle_dir, broken)
    (broken / "extractive.json").write_text("{}")
    with pytest.raises(SumctlError, match="extractive.json: sha256 .* does not match"):
        run_batch([tmp_path / "in"], tmp_path / "out", model=str(broken), workers=1)
    assert output_files(tmp_path / "out") == {} and not done_records(tmp_path / "out")


@pytest.mark.parametrize("cpus, workers, threads, jobs, expected", [
    (2, None, None, 43, (2, 1)),   # one single-threaded actor per CPU
    (2, None, 2, 43, (1, 2)),
    (2, 4, 1, 43, (2, 1)),         # a fixed pool that cannot all be placed would wait forever
    (8, None, None, 3, (3, 1)),    # no more actors than jobs
    (16, 4, None, 100, (4, 4)),
])
def test_ray_actors_times_threads_fit_the_cpus_ray_reports(cpus, workers, threads, jobs, expected):
    from sumctl.runtime.batch.ray_engine import plan_actors

    assert plan_actors(cpus, workers, threads, jobs) == expected


def test_one_batch_at_a_time_writes_a_dest(tmp_path, dialogsum_file, extractive_bundle_dir):
    from sumctl.runtime.batch.storage import Destination
    from sumctl.runtime.errors import OutputError

    write_dialogues(dialogsum_file, tmp_path / "in", 2)
    dest = Destination.open(tmp_path / "out")
    with dest.lock():
        with pytest.raises(OutputError, match=rf"another sumctl batch \(pid {os.getpid()}\)"):
            run_batch([tmp_path / "in"], tmp_path / "out", model=str(extractive_bundle_dir))
    assert run_batch([tmp_path / "in"], tmp_path / "out", model=str(extractive_bundle_dir)).failed == 0


def test_a_glob_over_a_folder_of_summaries_takes_only_the_transcripts(tmp_path, dialogsum_file,
                                                                       extractive_bundle_dir):
    write_dialogues(dialogsum_file, tmp_path / "in", 2)
    (tmp_path / "in" / "q3.summary.txt").write_text("#Person1#: a transcript named like a summary.\n")
    for _ in range(2):
        report = run_batch([str(tmp_path / "in" / "*.txt")], tmp_path / "in",
                           model=str(extractive_bundle_dir), formats=("txt",))
        assert report.summary()["documents"] == 3 and report.failed == 0


def test_minutes_in_a_batch_are_what_summarize_minutes_writes_and_another_job(tmp_path, extractive_bundle_dir):
    labels = Path(__file__).resolve().parents[2] / "data" / "minutes"
    (tmp_path / "in").mkdir()
    shutil.copy(labels / "budget-sync.txt", tmp_path / "in" / "2026-11-16 budget-sync.txt")
    shutil.copy(labels / "standup-release.vtt", tmp_path / "in" / "standup-release.vtt")
    out = tmp_path / "out"
    plain = run_batch([tmp_path / "in"], out, model=str(extractive_bundle_dir), workers=1)
    minutes = run_batch([tmp_path / "in"], out, model=str(extractive_bundle_dir), workers=1,
                        minutes=True, tasks="obsidian")
    # The minutes form is another output: not skipped as done by the plain run's records.
    assert (plain.summary()["summarized"], minutes.summary()["summarized"]) == (2, 2)
    summarize = subprocess.run(
        [sys.executable, "-m", "sumctl.cli", "summarize", *sorted((tmp_path / "in").iterdir()),
         "--model", str(extractive_bundle_dir), "--minutes", "--tasks", "obsidian",
         "--out", str(tmp_path / "s"), "-q"], capture_output=True, text=True, timeout=300)
    assert summarize.returncode == 0, summarize.stderr
    got = output_files(out)
    for name, path in output_files(tmp_path / "s").items():
        assert content(got[name]) == content(path), name
    record = json.loads(got["2026-11-16_budget-sync.summary.json"].read_text())
    assert record["action_items"] and "📅 2026-11-" in got["2026-11-16_budget-sync.summary.md"].read_text()
