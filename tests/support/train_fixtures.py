"""Fixtures for `sumctl train`: tiny random base models and small training sets, made on the spot.

The bases are the other helpers' session fixtures: benchmarks/perf/models.py's random T5 with its
trained Unigram tokenizer, and a tiny random llama with SmolLM2's real tokenizer and chat template
(so the chat-template masking is tested on a real template).
Transcripts are meeting-like lines from tiny_t5's corpus; each reference is a fixed function of
its transcript, so a model can overfit a handful of them in a few dozen steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def train_records(n: int, *, seed: int = 0, turns: int = 4, prefix: str = "rec") -> list[dict]:
    from sumctl.benchmarks.perf.models import meeting_corpus

    lines = meeting_corpus(n_lines=n * turns + 50, seed=seed + 101)
    records = []
    for i in range(n):
        chunk = lines[i * turns:(i + 1) * turns]
        speaker, text = chunk[0].split(": ", 1)
        topic = " ".join(text.rstrip(".?!").split()[1:4]).lower()
        records.append({"id": f"{prefix}-{i}", "transcript": "\n".join(chunk),
                        "reference": f"{speaker} talked about {topic}."})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def train_t5_base(tiny_t5_checkpoint) -> Path:
    """The T5 helper's tiny random T5 (training never writes into its base)."""
    return tiny_t5_checkpoint


@pytest.fixture(scope="session")
def train_llama_base(tiny_llama_checkpoint) -> Path:
    """The GGUF helper's tiny random llama with SmolLM2's tokenizer and chat template. Its weights
    are scaled up from the usual 0.02, which training needs too: LoRA leaves the embeddings and
    the output head frozen, and at 0.02 they cannot express a peaked next-token distribution."""
    return tiny_llama_checkpoint


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine the thread
    pool's barriers make every step several times slower."""
    from t5_fixtures import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture
def train_jsonl(tmp_path) -> Path:
    """Six short training pairs."""
    return write_jsonl(tmp_path / "train.jsonl", train_records(6))


@pytest.fixture
def train_eval_jsonl(tmp_path) -> Path:
    """Two of the training pairs (so that training visibly helps) as an eval set."""
    return write_jsonl(tmp_path / "eval.jsonl", train_records(6)[:2])
