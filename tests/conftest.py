"""Shared fixtures. Each area keeps its fixtures in tests/support/<area>_fixtures.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from batch_fixtures import *  # noqa: E402,F401,F403
from bench_fixtures import *  # noqa: E402,F401,F403
from gguf_fixtures import *  # noqa: E402,F401,F403
from t5_fixtures import *  # noqa: E402,F401,F403
from train_fixtures import *  # noqa: E402,F401,F403
from watch_fixtures import *  # noqa: E402,F401,F403
from serve_fixtures import *  # noqa: E402,F401,F403
from serve_runtime_fixtures import *  # noqa: E402,F401,F403

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default in pyproject.toml): one worker per core this run may use, by the
    same affinity-aware count the runtime plans its threads with."""
    from sumctl.runtime.machine import usable_cores

    return usable_cores()


def pytest_configure(config):
    """Under pytest-xdist each worker is pinned to a core of its own. The runtime plans threads
    and OpenMP waits from the cores it may use, so a worker's models (and the CLI processes it
    starts, which inherit the mask) never oversubscribe the machine. Unpinned, the two workers'
    threads fought over both cores: 587 s for the suite here, against 490 s pinned."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep tests out of the user's real model store and environment."""
    home = tmp_path_factory.getbasetemp() / "sumctl-home"
    monkeypatch.setenv("SUMCTL_HOME", str(home))
    monkeypatch.delenv("SUMCTL_MODEL", raising=False)
    monkeypatch.delenv("SUMCTL_MAX_BYTES", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def qmsum_dir() -> Path:
    path = SHARED_DATA / "qmsum"
    if not path.is_dir():
        pytest.skip(f"QMSum data not found at {path} (it lives in ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def dialogsum_file() -> Path:
    path = SHARED_DATA / "dialogsum" / "dialogsum.dev.jsonl"
    if not path.is_file():
        pytest.skip(f"DialogSum data not found at {path} (it lives in ../shared beside the repo)")
    return path
