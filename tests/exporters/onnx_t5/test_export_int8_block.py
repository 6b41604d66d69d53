"""`sumctl export t5 --quantize int8-block` on the random tiny T5: every weight product 8-bit in
MatMulNBits, each row's activations quantized on its own, so a document's tokens do not depend on
the documents batched with it, which dynamic int8's one scale per batch cannot promise."""

from __future__ import annotations

import collections
import json

import pytest
from t5_fixtures import all_initializers, all_nodes

from sumctl.exporters.onnx_t5.graph import INT8_BLOCK_LAYOUT
from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend
from sumctl.runtime.bundle import load_bundle
from sumctl.runtime.prompts import fill

pytestmark = pytest.mark.slow

DYNAMIC_INT8_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}


def _graph(bundle, role: str):
    import onnx

    return onnx.load(str(bundle.file(role)), load_external_data=False).graph


def test_int8_block_export_verifies_and_records_its_layout(tiny_t5_int8_block_bundle):
    bundle = load_bundle(tiny_t5_int8_block_bundle)
    m = bundle.manifest
    assert m.quantization == "int8-block"
    q = m.backend_config["quantization"]
    assert q["bits"] == 8 and q["block_size"] == INT8_BLOCK_LAYOUT.block_size and q["accuracy_level"] == 4
    assert q["int8_parts"] == ["encoder_model", "decoder_model", "decoder_with_past_model"]
    assert q["int8_matmuls"] == []
    v = m.verification
    assert v["verified"] and v["requirement"] == "reported (int8-block)" and 0.0 <= v["token_agreement"] <= 1.0
    json.dumps(m.verification)


def test_every_weight_product_is_8_bit_blockwise_and_no_activation_is_quantized_per_batch(
        tiny_t5_int8_block_bundle):
    import onnx

    bundle = load_bundle(tiny_t5_int8_block_bundle)
    for role in ("encoder", "decoder"):
        graph = _graph(bundle, role)
        nodes = list(all_nodes(graph))
        ops = collections.Counter(n.op_type for n in nodes)
        assert ops["MatMulNBits"] > 0 and not DYNAMIC_INT8_OPS & set(ops), (role, ops)
        weights = {t.name for t in all_initializers(graph)}
        assert not [n.name for n in nodes if n.op_type == "MatMul" and set(n.input) & weights], role
        for node in (n for n in nodes if n.op_type == "MatMulNBits"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["bits"] == 8 and attrs["accuracy_level"] == 4


def test_a_document_gets_the_same_tokens_alone_as_in_a_batch(tiny_t5_int8_block_bundle, dialogsum_file):
    """Eight DialogSum dialogues, greedy and with beams, each alone and all in batches of 4."""
    bundle = load_bundle(tiny_t5_int8_block_bundle)
    backend = OnnxT5Backend(bundle, threads=1)
    rows = [json.loads(line) for line in dialogsum_file.read_text(encoding="utf-8").splitlines()[:8]]
    inputs = [backend.encode(fill(bundle.manifest.prompts["short"], r["dialogue"])) for r in rows]
    for beams in (1, 2):
        alone = [backend.generate_ids([ids], max_new_tokens=24, num_beams=beams)[0] for ids in inputs]
        assert backend.generate_ids(inputs, max_new_tokens=24, num_beams=beams, batch_size=4) == alone
    backend.close()
