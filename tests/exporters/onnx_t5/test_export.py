"""`sumctl export t5` on a random tiny T5: real optimum export, real int8 quantization, real
verification against PyTorch, and the refusals a user meets."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from t5_fixtures import all_graphs, all_initializers, all_nodes, one_torch_thread

from sumctl.exporters.onnx_t5 import export_t5, host_kernel
from sumctl.runtime.bundle import MANIFEST_NAME, load_bundle
from sumctl.exporters.errors import ExportError
from sumctl.runtime.prompts import default_templates
from cli_fixtures import assert_one_line_error

ONNX_FILES = {"encoder_model.onnx", "decoder_model_merged.onnx"}


def sumctl(*args, cwd=None):
    # One PyTorch thread: see t5_fixtures.one_torch_thread.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sumctl.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)



def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.slow
def test_fp32_export_reproduces_pytorch_greedy_tokens(tiny_t5_bundle, tiny_t5_checkpoint, tiny_t5_torch):
    bundle = load_bundle(tiny_t5_bundle)  # every file's sha256 checked
    m = bundle.manifest
    assert m.backend == "onnx-t5" and m.quantization == "fp32" and m.max_input_tokens == 512
    assert m.prompts == default_templates()
    assert m.label == "smoke-test model: random weights"
    assert m.source["model"] == str(tiny_t5_checkpoint) and len(m.source["sha256"]) == 64
    assert m.backend_config["special_tokens"] == {"pad": 0, "eos": 1, "decoder_start": 0}
    for role in ("encoder", "decoder", "tokenizer"):
        assert bundle.file(role).is_file() and bundle.file(role).name in m.files
    v = m.verification
    assert v["verified"] and v["identical"] and v["requirement"] == "token-identical"
    assert v["token_agreement"] == 1.0 and v["rouge_l"] == 1.0 and v["inputs"] == 3
    assert all(p["identical"] and p["reference_tokens"] > 0 for p in v["per_input"])

    # Independently of the exporter's own check: a new input, PyTorch vs the loaded bundle.
    import torch
    from transformers import GenerationConfig

    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    model, tokenizer = tiny_t5_torch
    text = "Heidi: The survey results are in. Ivan: Then we present them to the council on Monday."
    ids = tokenizer(text).input_ids
    config = GenerationConfig(max_new_tokens=48, do_sample=False, decoder_start_token_id=0, pad_token_id=0,
                              eos_token_id=1)
    with one_torch_thread(), torch.inference_mode():
        reference = model.generate(input_ids=torch.tensor([ids]), generation_config=config)[0].tolist()[1:]
    backend = OnnxT5Backend(bundle)
    assert backend.generate_ids([ids], max_new_tokens=48)[0] == reference
    assert backend.decode(reference) == tokenizer.decode(reference, skip_special_tokens=True)


@pytest.mark.slow
def test_int8_export_records_its_agreement_with_pytorch(tiny_t5_int8_bundle, tiny_t5_bundle):
    import onnx

    bundle = load_bundle(tiny_t5_int8_bundle)
    m = bundle.manifest
    assert m.quantization == "int8"
    q = m.backend_config["quantization"]
    assert q["kernel"] == host_kernel() and q["method"] == "dynamic"
    v = m.verification
    assert v["verified"] and v["requirement"] == "reported (int8)"
    assert 0.0 <= v["token_agreement"] <= 1.0 and 0.0 <= v["rouge_l"] <= 1.0
    assert len(v["per_input"]) == v["inputs"] == 3
    agreement = sum(p["token_agreement"] * max(p["reference_tokens"], p["bundle_tokens"]) for p in v["per_input"])
    assert abs(agreement / sum(max(p["reference_tokens"], p["bundle_tokens"]) for p in v["per_input"])
               - v["token_agreement"]) < 1e-3
    # Really int8: integer matmuls in the graph, and much smaller weights than fp32's.
    nodes = list(all_nodes(onnx.load(str(bundle.file("decoder"))).graph))
    ops = {n.op_type for n in nodes}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}, ops
    fp32 = load_bundle(tiny_t5_bundle)
    assert bundle.file("weights").stat().st_size < 0.6 * fp32.file("weights").stat().st_size
    # Attention's activation x activation products stay fp32 (re-quantizing the cached keys and
    # values at every step is what they would cost), as MatMuls in cross-attention and inside
    # the fused MultiHeadAttention nodes of self-attention; every product with a weight is int8.
    float_matmuls = [n for n in nodes if n.op_type == "MatMul"]
    assert float_matmuls and "MultiHeadAttention" in ops and q["matmuls"].startswith("weights only")
    weights = {t.name for t in all_initializers(onnx.load(str(bundle.file("decoder")), load_external_data=False).graph)}
    assert not [n.name for n in float_matmuls if set(n.input) & weights]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny_t5_bundle", "tiny_t5_int8_bundle"])
def test_encoder_and_decoder_share_one_weights_file_without_duplicates(request, which):
    import onnx

    bundle = load_bundle(request.getfixturevalue(which))
    places = {}
    for role in ("encoder", "decoder"):
        graph = onnx.load(str(bundle.file(role)), load_external_data=False).graph
        for tensor in all_initializers(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in tensor.external_data}
                assert info["location"] == "weights.bin" and int(info["offset"]) % 4096 == 0
                places.setdefault((int(info["offset"]), int(info["length"])), set()).add((role, tensor.name))
    roles_by_place = [{role for role, _ in owners} for owners in places.values()]
    assert {"encoder", "decoder"} in roles_by_place, "the token embedding should be stored once, for both"
    data = bundle.file("weights").read_bytes()
    digests = collections.Counter(hashlib.sha256(data[o:o + n]).hexdigest() for o, n in places)
    assert max(digests.values()) == 1, "a tensor is stored twice in weights.bin"
    assert not [p for p in bundle.path.iterdir() if p.name.endswith(("_data", ".data"))]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny_t5_bundle", "tiny_t5_int8_bundle"])
def test_bundle_holds_one_copy_of_the_decoder_weights(request, which, tiny_t5_checkpoint):
    import onnx
    from safetensors import safe_open

    path = request.getfixturevalue(which)
    onnx_files = {p.name for p in path.iterdir() if ".onnx" in p.name}
    assert onnx_files == ONNX_FILES  # no decoder_model.onnx / decoder_with_past_model.onnx left
    decoder = onnx.load(str(path / "decoder_model_merged.onnx"))
    assert decoder.graph.node[0].op_type == "If" and "use_cache_branch" in {i.name for i in decoder.graph.input}
    digests = collections.Counter()
    stored = 0
    for tensor in all_initializers(decoder.graph):
        array = onnx.numpy_helper.to_array(tensor)
        if array.size >= 256:
            digests[hashlib.sha256(array.tobytes()).hexdigest()] += 1
            stored += array.nbytes
    assert max(digests.values()) == 1, "a weight is stored twice in the merged decoder"
    # Two copies would double it: the decoder holds at most its own share of the checkpoint.
    with safe_open(str(tiny_t5_checkpoint / "model.safetensors"), "pt") as f:
        decoder_bytes = sum(f.get_tensor(k).numel() * 4 for k in f.keys()
                            if k.startswith(("decoder.", "lm_head.", "shared.")))
    assert stored <= 1.05 * decoder_bytes


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny_t5_bundle", "tiny_t5_int8_bundle"])
def test_graphs_are_compact_and_keep_their_interface(request, which):
    import onnx

    bundle = load_bundle(request.getfixturevalue(which))
    for role in ("encoder", "decoder"):
        model = onnx.load(str(bundle.file(role)), load_external_data=False)
        assert not [n for n in all_nodes(model.graph) if n.name]
        assert not model.graph.value_info
        for graph in all_graphs(model.graph):
            inline = collections.Counter()
            for tensor in graph.initializer:
                external = tensor.data_location == onnx.TensorProto.EXTERNAL
                assert external == (len(tensor.raw_data) == 0)  # raw bytes, never typed lists
                if not external:
                    assert tensor.ByteSize() < 16 * 1024
                    inline[(tensor.data_type, tuple(tensor.dims), tensor.raw_data)] += 1
            assert max(inline.values(), default=1) == 1, "a graph holds an identical small tensor twice"
        names = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
        assert "input_ids" in names and ("logits" in names or "last_hidden_state" in names)
    if which == "tiny_t5_int8_bundle":  # the quantizer's per-channel zero points were many copies
        decoder = onnx.load(str(bundle.file("decoder")), load_external_data=False)
        readers = collections.Counter(n.input[3] for n in all_nodes(decoder.graph)
                                      if n.op_type == "MatMulInteger" and len(n.input) > 3)
        assert readers and max(readers.values()) > 1


@pytest.mark.slow
def test_mt5_exports_too(tmp_path):
    from sumctl.benchmarks.perf.models import build_tiny_t5

    checkpoint = build_tiny_t5(tmp_path / "tiny-mt5", model_type="mt5")
    with one_torch_thread():
        bundle = export_t5(str(checkpoint), tmp_path / "out", quantize="none", verify_inputs=2)
    assert bundle.manifest.backend_config["model_type"] == "mt5"
    assert bundle.manifest.verification["identical"] is True


# --- refusals ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=128, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(path, safe_serialization=True)
    return path


def test_a_checkpoint_that_is_not_t5_is_refused_naming_its_architecture(tiny_gpt2, tmp_path):
    with pytest.raises(ExportError) as caught:
        export_t5(str(tiny_gpt2), tmp_path / "out")
    message = str(caught.value)
    assert "gpt2" in message and "GPT2LMHeadModel" in message and str(tiny_gpt2) in message
    assert leftovers(tmp_path) == []


@pytest.fixture
def pickled_t5_checkpoint(tiny_t5_checkpoint, tmp_path) -> Path:
    """The tiny T5 as an old-style checkpoint: the same weights in a pickled pytorch_model.bin."""
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_t5_checkpoint.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, pickled / f.name)
    torch.save(load_file(tiny_t5_checkpoint / "model.safetensors"), pickled / "pytorch_model.bin")
    return pickled


def test_a_pickle_checkpoint_is_refused_without_allow_pickle(pickled_t5_checkpoint, tmp_path):
    pickled = pickled_t5_checkpoint
    with pytest.raises(ExportError, match="--allow-pickle"):
        export_t5(str(pickled), tmp_path / "out")
    assert leftovers(tmp_path) == ["pickled"]


@pytest.mark.slow
def test_allow_pickle_exports_a_pickle_checkpoint(pickled_t5_checkpoint, tmp_path):
    pickled = pickled_t5_checkpoint
    bundle = export_t5(str(pickled), tmp_path / "out", quantize="none", allow_pickle=True, verify=False)
    assert load_bundle(bundle.path).manifest.verification == {"verified": False,
                                                              "reason": "skipped at export (verify=False)"}


def test_the_output_folder_must_be_new_or_empty(tiny_t5_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not empty"):
        export_t5(str(tiny_t5_checkpoint), out)
    assert (out / "notes.txt").read_text() == "mine" and leftovers(out) == ["notes.txt"]
    assert leftovers(tmp_path) == ["out"]


def test_a_failed_export_leaves_nothing_behind(tiny_t5_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_t5_checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 4096)  # corrupt weights: loading fails
    parent = tmp_path / "bundles"
    parent.mkdir()
    with pytest.raises(ExportError, match="cannot load the model"):
        export_t5(str(broken), parent / "out")
    assert leftovers(parent) == []


def test_unknown_quantization_is_refused(tiny_t5_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="int8, int8-block, int4 or none"):
        export_t5(str(tiny_t5_checkpoint), tmp_path / "out", quantize="int3")


# --- the command line --------------------------------------------------------------------------


def test_cli_bad_model_path_is_a_one_line_error(tmp_path):
    result = sumctl("export", "t5", "--model", tmp_path / "no-such-model", "--out", tmp_path / "out")
    assert_one_line_error(result, "no-such-model", "no such checkpoint folder")
    assert not (tmp_path / "out").exists()


def test_cli_not_t5_is_a_one_line_error(tiny_gpt2, tmp_path):
    result = sumctl("export", "t5", "--model", tiny_gpt2, "--out", tmp_path / "out")
    assert_one_line_error(result, "gpt2", "not supported by `sumctl export t5`")


@pytest.mark.slow
def test_cli_exports_with_a_progress_display(tiny_t5_checkpoint, tmp_path):
    result = sumctl("export", "t5", "--model", tiny_t5_checkpoint, "--out", tmp_path / "b",
                    "--quantize", "none", "--max-input-tokens", "256")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Bundle written to" in result.stdout
    for step in ("Loading", "Exporting to ONNX", "Merging the decoders", "Verifying", "Hashing"):
        assert step in result.stderr, result.stderr
    assert "greedy tokens identical" in result.stderr
    manifest = json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())
    assert manifest["max_input_tokens"] == 256 and manifest["verification"]["identical"] is True
