"""read_gguf_header: a GGUF's metadata and tensor table through llama.cpp's own parser, checked
value for value against gguf-py's reader on a file holding every metadata type and quantized
tensors, and on the shipped adapter: the fields and their types, the tensors' shapes and their
mapped data; files it cannot parse are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
gguf = pytest.importorskip("gguf")

from sumctl.runtime.backends.gguf_file import read_gguf_header  # noqa: E402
from sumctl.runtime.errors import BundleError  # noqa: E402

EVERY_KIND = {
    "t.u8": (7, gguf.GGUFValueType.UINT8), "t.i8": (-7, gguf.GGUFValueType.INT8),
    "t.u16": (65000, gguf.GGUFValueType.UINT16), "t.i16": (-32000, gguf.GGUFValueType.INT16),
    "t.u32": (4_000_000_000, gguf.GGUFValueType.UINT32), "t.i32": (-2_000_000_000, gguf.GGUFValueType.INT32),
    "t.u64": (2**63 + 5, gguf.GGUFValueType.UINT64), "t.i64": (-(2**62), gguf.GGUFValueType.INT64),
    "t.f32": (0.1, gguf.GGUFValueType.FLOAT32), "t.f64": (0.1, gguf.GGUFValueType.FLOAT64),
    "t.true": (True, gguf.GGUFValueType.BOOL), "t.false": (False, gguf.GGUFValueType.BOOL),
    "t.str": ("Ünïcödé ▁tokens and <0x0A>", gguf.GGUFValueType.STRING),
    "t.empty_str": ("", gguf.GGUFValueType.STRING),
}
ARRAYS = {
    "t.strings": (["a", "▁b", "", "日本", "<|im_end|>"], gguf.GGUFValueType.STRING),
    "t.scores": ([0.5, -1000.0, 3.25], gguf.GGUFValueType.FLOAT32),
    "t.types": ([1, 3, 6, 2], gguf.GGUFValueType.INT32),
    "t.flags": ([True, False, True], gguf.GGUFValueType.BOOL),
}


def write_every_kind(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, (value, kind) in EVERY_KIND.items():
        writer.add_key_value(key, value, kind)
    for key, (values, kind) in ARRAYS.items():
        writer.add_key_value(key, values, gguf.GGUFValueType.ARRAY, sub_type=kind)
    writer.add_tensor("a.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.add_tensor("b.weight", np.ones((4, 32), dtype=np.float16))
    # Quantized blocks, as the LoRA merge finds them in a base (SmolLM2's is Q4_1 and Q8_0).
    rows = np.linspace(-1, 1, 4 * 64, dtype=np.float32).reshape(4, 64)
    for kind in (gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0):
        writer.add_tensor(f"{kind.name.lower()}.weight", gguf.quants.quantize(rows, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def assert_types_shapes_and_data_as_gguf_py(path):
    """What a writer needs to copy the file: each field's type, each tensor's shape and bytes."""
    header, reader = read_gguf_header(path), gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if not key.startswith("GGUF."):
            item = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            assert header.field_types[key] == (field.types[0], item), key
    assert len(header.tensors) == len(reader.tensors)
    for info, tensor in zip(header.tensors, reader.tensors):
        data = header.tensor_data(info)
        assert info.shape == tuple(int(n) for n in tensor.shape), info.name
        assert data.dtype == tensor.data.dtype and data.shape == tensor.data.shape, info.name
        assert np.array_equal(data, tensor.data), info.name


def as_gguf_py_reads_it(path) -> tuple[dict, list]:
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = [(t.name, int(t.tensor_type), int(t.data_offset - reader.data_offset), int(t.n_bytes))
               for t in reader.tensors]
    return fields, tensors


def test_every_metadata_type_reads_as_gguf_py_reads_it(tmp_path):
    path = write_every_kind(tmp_path / "every.gguf")
    header = read_gguf_header(path)
    fields, tensors = as_gguf_py_reads_it(path)
    assert set(header.fields) == set(fields)
    for key, value in fields.items():
        assert header.fields[key] == pytest.approx(value) if isinstance(value, float) else header.fields[key] == value, key
    assert header.fields["t.u64"] == 2**63 + 5 and header.fields["t.strings"][3] == "日本"
    assert header.fields["t.flags"] == [True, False, True]
    assert [(t.name, t.type_id, t.offset, t.nbytes) for t in header.tensors] == tensors
    assert [t.type_name for t in header.tensors] == ["F32", "F16", "Q4_1", "Q8_0"]
    assert [t.shape for t in header.tensors] == [(8, 8), (32, 4), (64, 4), (64, 4)]  # a row's length first
    assert_types_shapes_and_data_as_gguf_py(path)


def test_the_shipped_adapter_reads_as_gguf_py_reads_it():
    from sumctl.runtime.default_model import DEFAULT_ADAPTER_DIR, ADAPTER_FILE

    path = DEFAULT_ADAPTER_DIR / ADAPTER_FILE
    header = read_gguf_header(path)
    fields, tensors = as_gguf_py_reads_it(path)
    assert header.fields == pytest.approx(fields) and header.get("adapter.type") == "lora"
    assert [(t.name, t.type_id, t.offset, t.nbytes) for t in header.tensors] == tensors
    assert_types_shapes_and_data_as_gguf_py(path)


def test_a_tensor_whose_bytes_do_not_fit_its_shape_is_one_line(tmp_path):
    from dataclasses import replace

    header = read_gguf_header(write_every_kind(tmp_path / "every.gguf"))
    wrong = replace(header.tensors[0], shape=(8, 9))
    with pytest.raises(BundleError, match="a.weight holds 256 bytes, not the 288"):
        header.tensor_data(wrong)


def test_a_file_cut_inside_its_tensor_data_is_one_line(tmp_path):
    path = write_every_kind(tmp_path / "every.gguf")
    header = read_gguf_header(path)
    path.write_bytes(path.read_bytes()[:header.data_offset + 100])
    with pytest.raises(BundleError) as caught:
        header.tensor_data(header.tensors[1])
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("damage", ["truncated", "text", "empty", "missing"])
def test_a_file_llama_cpp_cannot_parse_is_one_line(tmp_path, damage):
    good = write_every_kind(tmp_path / "every.gguf").read_bytes()
    bad = tmp_path / "bad.gguf"
    if damage == "truncated":
        bad.write_bytes(good[:200])
    elif damage == "text":
        bad.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    elif damage == "empty":
        bad.write_bytes(b"")
    with pytest.raises(BundleError) as caught:
        read_gguf_header(bad)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
