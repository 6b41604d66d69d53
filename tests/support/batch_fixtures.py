"""Fixtures for `sumctl batch`: DialogSum dialogues as files, a deliberately slow plug-in backend
(so that a test can kill a driver or an actor mid-run), one real Ray cluster for the whole test
run, and helpers that read a batch's outputs.

The Ray cluster is local and kept on loopback, as `sumctl batch --engine ray` keeps the one it
starts: Ray 2.5x needs LOOPBACK_ENV in the environment before it is imported (see
runtime/batch/ray_engine.py), so nothing here imports Ray at collection time.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

__all__ = ["write_dialogues", "slow_plugin_dir", "slow_bundle_dir", "ray_cluster", "content", "output_files",
           "done_records", "temporaries", "listening_sockets", "SLOW_BACKEND", "SLOW_SECONDS"]

SLOW_BACKEND = "slow-extractive"
SLOW_SECONDS = 0.15  # per generate() call: a DialogSum dialogue is one call
_PLUGIN = f'''
import time

from sumctl.runtime.backends.extractive import ExtractiveBackend


class SlowExtractive(ExtractiveBackend):
    """The extractive baseline, {SLOW_SECONDS} s slower per call: a model a test can kill mid-run."""

    name = "{SLOW_BACKEND}"

    def generate(self, prompts, options):
        time.sleep({SLOW_SECONDS})
        return super().generate(prompts, options)
'''


def write_dialogues(dialogsum_file: Path, folder: Path, count: int, *, start: int = 0,
                    sub: dict[int, str] | None = None) -> list[Path]:
    """DialogSum dev dialogues start..start+count as `<fname>.txt` files (`#Person1#: ...`
    lines); `sub` puts dialogue i in a subfolder."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with open(dialogsum_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if i >= start + count:
                break
            record = json.loads(line)
            where = folder / (sub or {}).get(i, "")
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"{record['fname']}.txt"
            path.write_text(record["dialogue"] + "\n", encoding="utf-8")
            written.append(path)
    return written


@pytest.fixture(scope="session")
def slow_plugin_dir(tmp_path_factory) -> Path:
    """A plug-in backend installed the way a package installs one (a module and an entry point in
    the sumctl.backends group), on sys.path and on PYTHONPATH, so that pool processes and Ray
    workers started later find it too."""
    from sumctl.runtime.backends import ENTRY_POINT_GROUP

    plugins = tmp_path_factory.mktemp("batch-plugins")
    (plugins / "sumctl_test_slow.py").write_text(_PLUGIN)
    info = plugins / "sumctl_test_slow-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sumctl-test-slow\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{SLOW_BACKEND} = sumctl_test_slow:SlowExtractive\n")
    sys.path.insert(0, str(plugins))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(plugins), os.environ.get("PYTHONPATH")) if p)
    importlib.invalidate_caches()
    return plugins


@pytest.fixture(scope="session")
def slow_bundle_dir(slow_plugin_dir, tmp_path_factory) -> Path:
    """An extractive bundle whose manifest names the slow plug-in backend."""
    from sumctl.runtime.backends.extractive import build_extractive_bundle
    from sumctl.runtime.bundle import write_manifest

    bundle = build_extractive_bundle(tmp_path_factory.mktemp("bundles") / "slow")
    write_manifest(bundle.path, replace(bundle.manifest, backend=SLOW_BACKEND, name="slow-extractive"))
    return bundle.path


@pytest.fixture(scope="session")
def ray_cluster(slow_plugin_dir, tmp_path_factory):
    """One local Ray cluster for the whole test run (2 CPUs, no dashboard, on loopback), shut
    down at the end. It is started after the slow plug-in is on PYTHONPATH, and with the
    tests' model store, so that its workers see both."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'sumctl[ray]')")
    from sumctl.runtime.batch.ray_engine import import_ray

    os.environ["SUMCTL_HOME"] = str(tmp_path_factory.getbasetemp() / "sumctl-home")
    ray = import_ray(loopback=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()


# --- reading a batch's outputs ---------------------------------------------------------------

# The footer of a summary ("...chapter(s), 0.3 s._") and of minutes ("...0.3 s; minutes by cues._").
_FOOTER_SECONDS = re.compile(r"(chapter\(s\), )\d[\d,]*\.\d( s(?:\._$|; minutes by ))", re.M)


def content(path: Path) -> str | dict:
    """A summary file's content, without the wall-clock times two runs cannot share: the JSON
    record less `timings` (load_s, summarize_s, also in `provenance`) and each chapter's `seconds`; the Markdown with
    the footer's seconds blanked. Everything else, the text included, must be byte-identical."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        record = json.loads(text)
        record.pop("timings", None)
        record.get("provenance", {}).pop("timings", None)
        for chapter in record.get("chapters", []):
            chapter.pop("seconds", None)
        return record
    if path.suffix == ".md":
        return _FOOTER_SECONDS.sub(r"\1_\2", text)
    return text


def output_files(folder: Path) -> dict[str, Path]:
    """Relative path -> file, for every summary and error file under folder (records and hidden
    files left out)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def done_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(folder.rglob(".sumctl/done/*.json"))]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def listening_sockets(pids: set[int] | None = None) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening TCP socket of Ray's processes:
    those under this process (a cluster it started) and any `ray::`, raylet or gcs_server
    process on the machine."""
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    procs = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter(["name"]):
        name = p.info["name"] or ""
        if name.startswith("ray::") or name in ("raylet", "gcs_server"):
            procs.setdefault(p.pid, p)
    if pids is not None:
        procs = {pid: p for pid, p in procs.items() if pid in pids}
    found = []
    for p in procs.values():
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.append((p.pid, p.name(), c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
