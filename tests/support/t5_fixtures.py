"""Fixtures for the T5 path: a random tiny T5 checkpoint made on the spot, and its fp32, int8 and
int4 bundles exported by the real exporter (optimum + ONNX Runtime), each built once per session.

The model is FLAN-T5's architecture scaled down (d_model 64, 2+2 layers) so that an export with
its PyTorch verification takes seconds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

__all__ = ["tiny_t5_checkpoint", "tiny_t5_bundle", "tiny_t5_unfused_bundle", "tiny_t5_int8_bundle",
           "tiny_t5_int8_block_bundle", "tiny_t5_int4_bundle", "tiny_t5_torch"]


@contextlib.contextmanager
def one_torch_thread():
    """A model this small gains nothing from more threads, and on a shared 2-core machine the
    thread pool's barriers make every PyTorch step many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_t5_checkpoint(tmp_path_factory) -> Path:
    """A Hugging Face T5 checkpoint folder: random weights (safetensors) and a trained tokenizer."""
    from sumctl.benchmarks.perf.models import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("t5-checkpoint") / "tiny-t5", seed=0)


def _export_tiny(checkpoint: Path, tmp_path_factory, name: str, quantize: str, **options) -> Path:
    from sumctl.exporters.onnx_t5 import export_t5
    from sumctl.benchmarks.perf.models import SMOKE_TEST_LABEL

    out = tmp_path_factory.mktemp("t5-bundles") / name
    with one_torch_thread():
        return export_t5(str(checkpoint), out, quantize=quantize, label=SMOKE_TEST_LABEL, **options).path


@pytest.fixture(scope="session")
def tiny_t5_bundle(tiny_t5_checkpoint, tmp_path_factory) -> Path:
    """The fp32 ONNX bundle (verified token-identical to PyTorch at export)."""
    return _export_tiny(tiny_t5_checkpoint, tmp_path_factory, "tiny-t5-fp32", "none")


@pytest.fixture(scope="session")
def tiny_t5_unfused_bundle(tiny_t5_checkpoint, tmp_path_factory) -> Path:
    """The fp32 bundle as exports were before the decoder's self-attention was fused (issue
    30): optimum's graph, as it comes."""
    return _export_tiny(tiny_t5_checkpoint, tmp_path_factory, "tiny-t5-unfused", "none", fuse_attention=False)


@pytest.fixture(scope="session")
def tiny_t5_int8_bundle(tiny_t5_checkpoint, tmp_path_factory) -> Path:
    """The int8 ONNX bundle, with its agreement against PyTorch in the manifest."""
    return _export_tiny(tiny_t5_checkpoint, tmp_path_factory, "tiny-t5-int8", "int8")


@pytest.fixture(scope="session")
def tiny_t5_int8_block_bundle(tiny_t5_checkpoint, tmp_path_factory) -> Path:
    """The int8-block ONNX bundle (8-bit MatMulNBits everywhere, the embeddings dynamic int8)."""
    return _export_tiny(tiny_t5_checkpoint, tmp_path_factory, "tiny-t5-int8-block", "int8-block")


@pytest.fixture(scope="session")
def tiny_t5_int4_bundle(tiny_t5_checkpoint, tmp_path_factory) -> Path:
    """The int4 ONNX bundle. Its floor is lowered to 0: random weights leave the logits' top two
    so close that 4-bit weights change most greedy paths early (about 3% of tokens agree with
    PyTorch, where the int8 bundle reaches about 83%), far below INT4_MIN_TOKEN_AGREEMENT, which
    is meant for trained models."""
    return _export_tiny(tiny_t5_checkpoint, tmp_path_factory, "tiny-t5-int4", "int4", min_token_agreement=0.0)


@pytest.fixture(scope="session")
def tiny_t5_torch(tiny_t5_checkpoint):
    """(model, tokenizer) in transformers, the reference the runtime is compared against."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_checkpoint, torch_dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_t5_checkpoint)


# ONNX graphs with their If branches, for tests that count nodes or tensors.


def all_graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from all_graphs(sub)


def all_initializers(graph):
    for sub in all_graphs(graph):
        yield from sub.initializer


def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from all_nodes(sub)
