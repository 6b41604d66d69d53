"""The decoder's self-attention blocks fused into ONNX Runtime MultiHeadAttention nodes at
export (issue 30, lever 2), on the random tiny T5: the bundle's interface and its tokens are
those of the graph as optimum exported it."""

from __future__ import annotations

import collections
import json

import pytest
from t5_fixtures import all_nodes, one_torch_thread

from sumctl.exporters.onnx_t5.graph import fuse_decoder_attention
from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.prompts import fill

pytestmark = pytest.mark.slow


def _branch_ops(bundle) -> list[collections.Counter]:
    """Operator counts of each branch of the merged decoder's If (first step, with the cache)."""
    import onnx

    graph = onnx.load(str(bundle.file("decoder")), load_external_data=False).graph
    branch = next(n for n in graph.node if n.op_type == "If")
    return [collections.Counter(n.op_type for n in all_nodes(a.g)) for a in branch.attribute]


def test_every_self_attention_block_is_one_node_and_the_export_still_matches_pytorch(tiny_t5_bundle):
    bundle = load_bundle(tiny_t5_bundle)
    decoder = bundle.manifest.backend_config["decoder"]
    layers = decoder["layers"]
    assert decoder["attention"] == "MultiHeadAttention" and decoder["fused"] == "self-attention"
    assert decoder["fused_blocks"] == layers
    for ops in _branch_ops(bundle):
        # the cross-attention blocks stay MatMuls and a softmax, which broadcast over beams
        assert ops["MultiHeadAttention"] == layers and ops["Softmax"] == layers, ops
        assert ops["SkipSimplifiedLayerNormalization"] > 0 and ops["FastGelu"] > 0, ops
    # fp32 must reproduce PyTorch's greedy tokens exactly, or the export would have failed
    assert bundle.manifest.verification["token_agreement"] == 1.0


def test_the_unfused_export_records_why_and_keeps_optimums_graph(tiny_t5_unfused_bundle):
    bundle = load_bundle(tiny_t5_unfused_bundle)
    decoder = bundle.manifest.backend_config["decoder"]
    assert decoder["attention"] == "unfused" and "fuse_attention=False" in decoder["reason"]
    for ops in _branch_ops(bundle):
        assert ops["MultiHeadAttention"] == 0 and ops["Softmax"] == 2 * decoder["layers"], ops


def test_fused_and_unfused_bundles_write_the_same_tokens(tiny_t5_bundle, tiny_t5_unfused_bundle, dialogsum_file):
    """Twenty DialogSum dialogues greedy, alone, in batches of 4 and with prompt lookup (several
    new positions on the cache; drafts fed asserted), and eight with
    beams (one input's beams sharing its cross-attention cache): token for token the same."""
    fused = OnnxT5Backend(load_bundle(tiny_t5_bundle), threads=1)
    plain = OnnxT5Backend(load_bundle(tiny_t5_unfused_bundle), threads=1)
    fused_lookup = OnnxT5Backend(load_bundle(tiny_t5_bundle), threads=1, lookup=True)
    rows = [json.loads(line) for line in dialogsum_file.read_text(encoding="utf-8").splitlines()[:20]]
    inputs = [fused.encode(fill(fused.bundle.manifest.prompts["short"], r["dialogue"])) for r in rows]
    expected = plain.generate_ids(inputs, max_new_tokens=32, batch_size=1)
    assert fused.generate_ids(inputs, max_new_tokens=32, batch_size=1) == expected
    assert fused.generate_ids(inputs, max_new_tokens=32, batch_size=4) == expected
    assert [fused_lookup.generate_ids([ids], max_new_tokens=32)[0] for ids in inputs] == expected
    # Drafts were fed, so steps of several new positions ran on the fused cache (whether greedy
    # keeps any depends on the random checkpoint: 0 of 10 on one fresh clone).
    assert fused_lookup.lookup_counts["drafted"] > 0, fused_lookup.lookup_counts
    expected = plain.generate_ids(inputs[:8], max_new_tokens=24, num_beams=2, batch_size=1)
    assert fused.generate_ids(inputs[:8], max_new_tokens=24, num_beams=2, batch_size=1) == expected
    assert fused.generate_ids(inputs[:8], max_new_tokens=24, num_beams=2, batch_size=4) == expected
    for backend in (fused, plain, fused_lookup):
        backend.close()


def test_a_graph_the_fusion_cannot_match_whole_is_left_as_it_was(tiny_t5_checkpoint, tmp_path):
    """Told to expect more attention blocks than the graph has (as another T5 variant's graph
    would fall short), the fusion changes no file and says why."""
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoModelForSeq2SeqLM

    with one_torch_thread():
        model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_checkpoint).eval()
        onnx_export_from_model(model, tmp_path, task="text2text-generation-with-past", no_post_process=True,
                               do_validation=False, preprocessors=[])
    parts = {role: tmp_path / f"{role}.onnx" for role in ("decoder_model", "decoder_with_past_model")}
    before = {role: path.read_bytes() for role, path in parts.items()}
    layers = model.config.num_decoder_layers
    result = fuse_decoder_attention(parts, heads=model.config.num_heads, head_dim=model.config.d_kv,
                                    layers=layers + 1)
    assert result["attention"] == "unfused"
    assert result["reason"] == f"decoder_model: {layers} of {layers + 1} attention blocks matched"
    assert {role: path.read_bytes() for role, path in parts.items()} == before
