"""`sumctl export t5 --quantize int4` on the random tiny T5 (issue 30, its first lever): the
decoder's weights 4-bit in MatMulNBits, its FFN output projections and LM head int8, the encoder
int8 whole, verified against PyTorch like int8 and refused below its floor."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from t5_fixtures import all_initializers, all_nodes, one_torch_thread

from sumctl.exporters.errors import ExportError
from sumctl.exporters.onnx_t5 import export_t5
from sumctl.exporters.onnx_t5.graph import INT4_BLOCK_SIZE
from sumctl.runtime.bundle import load_bundle

INT8_OPS = {"MatMulInteger", "DynamicQuantizeMatMul"}


def op_counts(bundle, role: str) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in all_nodes(onnx.load(str(bundle.file(role)),
                                                                       load_external_data=False).graph))


def bundle_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


@pytest.mark.slow
def test_int4_export_verifies_and_records_its_agreement(tiny_t5_int4_bundle):
    bundle = load_bundle(tiny_t5_int4_bundle)  # every file's sha256 checked
    m = bundle.manifest
    assert m.backend == "onnx-t5" and m.quantization == "int4"
    q = m.backend_config["quantization"]
    assert q["bits"] == 4 and q["block_size"] == INT4_BLOCK_SIZE and q["accuracy_level"] == 4
    assert q["int8_matmuls"] == ["lm_head", "wo"] and q["int8"]["method"] == "dynamic"
    assert q["int4_parts"] == ["decoder_model", "decoder_with_past_model"]
    v = m.verification
    assert v["verified"] and v["requirement"] == "token agreement >= 0.0 (int4)"
    assert v["min_token_agreement"] == 0.0 and len(v["per_input"]) == v["inputs"] == 3
    assert 0.0 <= v["token_agreement"] <= 1.0 and 0.0 <= v["rouge_l"] <= 1.0
    json.dumps(m.verification)  # the manifest holds plain JSON


@pytest.mark.slow
def test_int4_bundle_is_smaller_than_the_int8_bundle(tiny_t5_int4_bundle, tiny_t5_int8_bundle):
    # Only the decoder's products are 4-bit; the encoder, the embedding and the LM head, int8 in
    # both, are most of this model's bytes (431,779 against 474,757 when written).
    assert bundle_bytes(tiny_t5_int4_bundle) < 0.95 * bundle_bytes(tiny_t5_int8_bundle)


@pytest.mark.slow
def test_decoder_matmuls_are_matmulnbits_except_the_ffn_outputs_and_lm_head(tiny_t5_int4_bundle,
                                                                           tiny_t5_int8_bundle):
    import onnx

    int4, int8 = load_bundle(tiny_t5_int4_bundle), load_bundle(tiny_t5_int8_bundle)
    config = json.loads(int4.file("config").read_text())
    layers = config["num_layers"]
    # The encoder is the int8 bundle's, product for product (it is bound by arithmetic, where
    # int8 kernels are faster: graph.INT4_PARTS).
    assert op_counts(int4, "encoder") == op_counts(int8, "encoder")
    # One `wo` per layer; the merged decoder holds each branch's (and each branch's LM head).
    ops, ops8 = op_counts(int4, "decoder"), op_counts(int8, "decoder")
    int8_products = sum(ops[op] for op in INT8_OPS)
    assert int8_products == 2 * (layers + 1), ops
    # Every product with a weight is either 4-bit or one of the excluded int8 ones.
    assert ops["MatMulNBits"] + int8_products == sum(ops8[op] for op in INT8_OPS), (ops, ops8)
    graph = onnx.load(str(int4.file("decoder")), load_external_data=False).graph
    weights = {t.name for t in all_initializers(graph)}
    nodes = list(all_nodes(graph))
    assert not [n for n in nodes if n.op_type == "MatMul" and set(n.input) & weights]
    for node in (n for n in nodes if n.op_type == "MatMulNBits"):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 4 and attrs["block_size"] == INT4_BLOCK_SIZE and attrs["accuracy_level"] == 4
    # Quantized before the merge: the with-past branch's 4-bit products (8 a layer: self-attention
    # 4, the cross-attention query and output, wi_0, wi_1) read the first branch's weights.
    decoder = onnx.load(str(int4.file("decoder")), load_external_data=False).graph
    packed = {n.input[1] for n in all_nodes(decoder) if n.op_type == "MatMulNBits"}
    assert len(packed) == op_counts(int4, "decoder")["MatMulNBits"] - 8 * layers == 10 * layers


@pytest.mark.slow
def test_the_runtime_summarizes_with_an_int4_bundle(tiny_t5_int4_bundle, tmp_path):
    from sumctl.runtime import Summarizer

    source = tmp_path / "meeting.txt"
    source.write_text("Alice: The budget is twelve thousand euros.\nBob: Half of it goes to the fair.\n")
    summary = Summarizer(tiny_t5_int4_bundle, max_summary_tokens=16).summarize(source, length="short")
    assert summary.text and summary.model["quantization"] == "int4"


@pytest.mark.slow
def test_an_int4_bundle_below_its_floor_is_refused_in_one_line(tiny_t5_checkpoint, tmp_path):
    parent = tmp_path / "bundles"
    parent.mkdir()
    with one_torch_thread(), pytest.raises(ExportError) as caught:
        # A floor of 1.0: random weights never give 4-bit tokens identical to fp32's.
        export_t5(str(tiny_t5_checkpoint), parent / "out", quantize="int4", min_token_agreement=1.0,
                  verify_inputs=1, verify_max_new_tokens=8)
    message = str(caught.value)
    assert "\n" not in message and str(tiny_t5_checkpoint) in message
    assert "int4 bundle agrees with PyTorch fp32" in message and "use --quantize int8" in message.lower()
    assert sorted(p.name for p in parent.iterdir()) == []


@pytest.mark.slow
def test_the_int4_block_size_is_the_users_and_recorded(tiny_t5_checkpoint, tmp_path):
    import onnx

    with one_torch_thread():
        bundle = export_t5(str(tiny_t5_checkpoint), tmp_path / "b16", quantize="int4", int4_block_size=16,
                           min_token_agreement=0.0, verify_inputs=1, verify_max_new_tokens=8)
    assert bundle.manifest.backend_config["quantization"]["block_size"] == 16
    graph = onnx.load(str(bundle.file("decoder")), load_external_data=False).graph
    sizes = {onnx.helper.get_attribute_value(a) for n in all_nodes(graph) if n.op_type == "MatMulNBits"
             for a in n.attribute if a.name == "block_size"}
    assert sizes == {16}


def test_an_int4_block_size_not_offered_is_refused_in_one_line_before_any_work(tmp_path):
    with pytest.raises(ExportError) as caught:
        export_t5("no-such-checkpoint", tmp_path / "out", quantize="int4", int4_block_size=48)
    assert str(caught.value) == "unknown int4 block size 48 (use 16, 32, 64, 128)"
    assert not (tmp_path / "out").exists()
