"""`sumctl batch --engine ray` on a real Ray cluster: one local cluster for the whole test run
(batch_fixtures.ray_cluster: 2 CPUs, no dashboard, on loopback), plus a 2-node cluster made
with Ray's own test utility.

"Byte-identical to `sumctl summarize`" is judged on content: the summary text, the `.txt`
files and the Markdown are identical byte for byte, except the one wall-clock figure in the
Markdown's footer, and the JSON records are identical except their measured times (`timings`
and each chapter's `seconds`), which two runs of `sumctl summarize` itself do not share.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

if importlib.util.find_spec("ray") is None:  # not importorskip: Ray must not be imported yet
    pytest.skip("Ray is not installed (pip install 'sumctl[ray]')", allow_module_level=True)

from sumctl.runtime.batch import run_batch

from batch_fixtures import (content, done_records, listening_sockets, output_files, temporaries,
                            write_dialogues)
from watch_fixtures import wait_until

BAD = {"empty.txt": b"", "binary.txt": b"\x00\x01\x02binary\x00", "broken.json": b"[{\"speaker\": \"A\""}
LOOPBACK_PREFIXES = ("127.", "::ffff:127.", "::1")
# The kill tests: enough slow (0.15 s) dialogues that a kill after the first done-records lands
# mid-run (each test asserts it did), few enough that the rest takes about a second.
KILL_DIALOGUES = 16


def batch_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "sumctl.cli", "batch", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def address(ray) -> str:
    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, dialogsum_file):
    """16 DialogSum dev dialogues (4 of them in a subfolder) and three bad files: every property
    checked here is per file (two actors, a subfolder, three failures), so 16 show it as 40 did."""
    src = tmp_path_factory.mktemp("corpus") / "in"
    files = write_dialogues(dialogsum_file, src, 16, sub={i: "sub" for i in range(12, 16)})
    for name, data in BAD.items():
        (src / name).write_bytes(data)
    return src, files


@pytest.fixture(scope="module")
def ray_run(ray_cluster, corpus, extractive_bundle_dir, tmp_path_factory):
    src, _ = corpus
    out = tmp_path_factory.mktemp("ray-out") / "out"
    sockets: list = []
    stop = threading.Event()

    def watch_sockets():  # while the actors run: every listening socket of Ray's processes
        while not stop.is_set():
            sockets.extend(listening_sockets())
            stop.wait(0.3)

    watcher = threading.Thread(target=watch_sockets, daemon=True)
    watcher.start()
    try:
        report = run_batch([src], out, model=str(extractive_bundle_dir), engine="ray",
                           recursive=True)
    finally:
        stop.set()
        watcher.join(10)
    return out, report, sockets


def test_16_dialogues_match_summarize_with_one_done_record_each(ray_run, corpus,
                                                                 extractive_bundle_dir, tmp_path):
    out, report, _ = ray_run
    _, files = corpus
    summary = report.summary()
    assert (summary["documents"], summary["summarized"], summary["failed"]) == (19, 16, 3)
    assert summary["engine"] == "ray" and summary["workers"] == 2 and summary["threads"] == 1
    # Ray ran it: the records name Ray's nodes and two actors.
    records = done_records(out)
    assert len(records) == 19
    assert all(r["worker"]["engine"] == "ray" and r["worker"]["node_id"] for r in records)
    assert len({r["worker"]["pid"] for r in records}) == 2
    done = [r for r in records if r["status"] == "done"]
    assert len(done) == 16 and len({r["key"] for r in done}) == 16
    # `sumctl summarize` on the same files, the subfolder's into the mirrored subfolder.
    expected = tmp_path / "summarize"
    for folder, chosen in ((expected, files[:12]), (expected / "sub", files[12:])):
        result = subprocess.run([sys.executable, "-m", "sumctl.cli", "summarize", *map(str, chosen),
                                 "--model", str(extractive_bundle_dir), "--out", str(folder), "-q"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    theirs, ours = output_files(expected), output_files(out)
    assert sorted(theirs) == sorted(n for n in ours if not n.endswith(".error.txt"))
    for name, path in theirs.items():
        assert content(ours[name]) == content(path), name
        if name.endswith(".md"):
            assert ours[name].read_bytes().split(b"\n_")[0] == path.read_bytes().split(b"\n_")[0]


def test_bad_files_become_error_files_and_the_batch_succeeds(ray_run):
    out, report, _ = ray_run
    failed = [r for r in report.results if r.status == "failed"]
    assert sorted(os.path.basename(r.source) for r in failed) == sorted(BAD)
    reasons = " ".join(r.reason for r in failed)
    assert "empty" in reasons and "binary" in reasons and "malformed JSON" in reasons
    for name in BAD:
        error = out / f"{name.rsplit('.', 1)[0]}.error.txt"
        assert error.read_text().startswith("sumctl could not summarize this file.")
    assert not temporaries(out)


def test_no_ray_process_listens_beyond_loopback(ray_run):
    _, _, sockets = ray_run
    assert sockets, "no listening Ray process was seen while the batch ran"
    exposed = {s for s in sockets if not s[2].startswith(LOOPBACK_PREFIXES)}
    assert not exposed, exposed


def test_a_rerun_skips_everything_without_loading_the_model(ray_run, corpus, extractive_bundle_dir,
                                                            tmp_path):
    out, _, _ = ray_run
    src, _ = corpus
    before = {name: p.read_bytes() for name, p in output_files(out).items()}
    broken = tmp_path / "broken"  # the same manifest, so the same keys; any load fails on it
    shutil.copytree(extractive_bundle_dir, broken)
    (broken / "extractive.json").write_text("{}")
    started = time.perf_counter()
    again = run_batch([src], out, model=str(broken), engine="ray", recursive=True)
    seconds = time.perf_counter() - started
    print(f"rerun of 19 done jobs: {seconds:.3f} s")
    assert seconds < 5
    assert (again.count("skipped_done"), again.count("summarized"), again.failed) == (19, 0, 0)
    assert again.workers == 0  # no actor was started
    assert {name: p.read_bytes() for name, p in output_files(out).items()} == before


def test_local_engine_writes_what_ray_wrote(ray_run, corpus, extractive_bundle_dir, tmp_path):
    out, _, _ = ray_run
    src, _ = corpus
    local = run_batch([src], tmp_path / "local", model=str(extractive_bundle_dir), engine="local",
                      recursive=True, workers=2)
    assert local.summary()["summarized"] == 16 and local.failed == 3
    theirs, ours = output_files(tmp_path / "local"), output_files(out)
    assert sorted(theirs) == sorted(ours)
    for name in ours:
        assert content(theirs[name]) == content(ours[name]), name


def test_a_killed_driver_then_a_rerun_gives_every_output_once(ray_cluster, dialogsum_file,
                                                              slow_bundle_dir, tmp_path):
    write_dialogues(dialogsum_file, tmp_path / "in", KILL_DIALOGUES)
    out = tmp_path / "out"
    args = [tmp_path / "in", "--out", out, "--model", slow_bundle_dir, "--engine", "ray",
            "--address", address(ray_cluster), "-q"]
    proc = batch_cli(*args)
    try:
        wait_until(lambda: len(done_records(out)) >= 3 or proc.poll() is not None, 180,
                   "the first done-records")
        killed_at = len(done_records(out))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert killed_at < KILL_DIALOGUES, "the batch finished before it could be killed"
    rerun = batch_cli(*args)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.splitlines()[-1])
    assert (summary["documents"], summary["failed"]) == (KILL_DIALOGUES, 0)
    assert summary["skipped_done"] >= killed_at
    assert sorted(output_files(out)) == sorted(
        f"dev_{i}.summary.{fmt}" for i in range(KILL_DIALOGUES) for fmt in ("json", "md"))
    records = done_records(out)
    assert len(records) == KILL_DIALOGUES and {r["status"] for r in records} == {"done"}
    # Workers of the killed driver may still be finishing a write: their temporaries are gone
    # once they are.
    wait_until(lambda: not temporaries(out), 30, "no temporary files")


def test_a_killed_actor_is_restarted_and_nothing_is_written_twice(ray_cluster, dialogsum_file,
                                                                 slow_bundle_dir, tmp_path):
    write_dialogues(dialogsum_file, tmp_path / "in", KILL_DIALOGUES)
    out = tmp_path / "out"
    proc = batch_cli(tmp_path / "in", "--out", out, "--model", slow_bundle_dir, "--engine", "ray",
                     "--address", address(ray_cluster), "--workers", "2", "-q")
    try:
        first = wait_until(lambda: done_records(out) or proc.poll() is not None, 180,
                           "the first done-record")
        assert proc.poll() is None, "the batch finished before an actor could be killed"
        victim = first[0]["worker"]["pid"]
        os.kill(victim, signal.SIGKILL)
        killed_at = len(done_records(out))
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert killed_at < KILL_DIALOGUES
    summary = json.loads(stdout.splitlines()[-1])
    assert (summary["documents"], summary["summarized"], summary["failed"]) == (KILL_DIALOGUES, KILL_DIALOGUES, 0)
    records = done_records(out)
    assert len(records) == KILL_DIALOGUES and {r["status"] for r in records} == {"done"}
    assert sorted(output_files(out)) == sorted(
        f"dev_{i}.summary.{fmt}" for i in range(KILL_DIALOGUES) for fmt in ("json", "md"))
    pids = {r["worker"]["pid"] for r in records}
    assert victim in pids and len(pids) >= 2
    wait_until(lambda: not temporaries(out), 30, "no temporary files")


@pytest.mark.slow
def test_the_embedded_default_gguf_on_2_dialogues(ray_cluster, smollm2_gguf_path, dialogsum_file,
                                                   tmp_path):
    write_dialogues(dialogsum_file, tmp_path / "in", 2)
    report = run_batch([tmp_path / "in"], tmp_path / "out", engine="ray", length="short")
    assert (report.count("summarized"), report.failed) == (2, 0), [r.reason for r in report.results]
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.summary.json")]
    assert len(records) == 2 and len(done_records(tmp_path / "out")) == 2
    assert {r["model"]["backend"] for r in records} == {"gguf"}
    assert all(r["text"].strip() for r in records)
    assert report.summary()["model_s"] > 0


@pytest.mark.slow
def test_a_two_node_cluster_on_loopback_runs_tasks_on_both_nodes(ray_cluster, dialogsum_file,
                                                                 slow_bundle_dir, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    try:
        nodes = [cluster.add_node(num_cpus=1, include_dashboard=False) for _ in range(2)]
        cluster.wait_for_nodes()
        assert {n.node_ip_address for n in nodes} == {"127.0.0.1"}
        write_dialogues(dialogsum_file, tmp_path / "in", 12)
        proc = batch_cli(tmp_path / "in", "--out", tmp_path / "out", "--model", slow_bundle_dir,
                         "--engine", "ray", "--address", cluster.address, "--threads", "1", "-q")
        sockets = []
        while proc.poll() is None:
            sockets.extend(listening_sockets())
            time.sleep(0.3)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout.splitlines()[-1])
        assert (summary["summarized"], summary["nodes"], summary["workers"]) == (12, 2, 2)
        ran_on = {r["worker"]["node_id"] for r in done_records(tmp_path / "out")}
        assert ran_on == {n.node_id for n in nodes}
        exposed = {s for s in sockets if not s[2].startswith(LOOPBACK_PREFIXES)}
        assert sockets and not exposed, exposed
    finally:
        cluster.shutdown()


def test_a_bundle_that_does_not_load_on_the_actors_stops_the_batch_in_one_line(
        ray_cluster, dialogsum_file, extractive_bundle_dir, tmp_path):
    from sumctl.runtime.errors import SumctlError

    write_dialogues(dialogsum_file, tmp_path / "in", 3)
    broken = tmp_path / "broken"
    shutil.copytree(extractive_bundle_dir, broken)
    (broken / "extractive.json").write_text("{}")
    with pytest.raises(SumctlError, match=r"extractive.json: sha256 .* does not match") as caught:
        run_batch([tmp_path / "in"], tmp_path / "out", model=str(broken), engine="ray")
    assert "\n" not in str(caught.value)
    assert output_files(tmp_path / "out") == {} and not done_records(tmp_path / "out")
