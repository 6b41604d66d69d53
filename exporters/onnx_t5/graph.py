"""The ONNX graphs of a T5 bundle: int8 quantization for this CPU's kernels (optimum's
ORTQuantizer) or int4 weight-only (ONNX Runtime's MatMulNBitsQuantizer), the decoder and its cache branch merged into one graph, and every weight stored
once, page-aligned, in one file the runtime maps."""

from __future__ import annotations

import os
import platform
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sumctl.exporters.base import one_line
from sumctl.exporters.errors import ExportError
from sumctl.runtime.bundle.configs import T5_INT4_BLOCK_SIZE


WEIGHTS_FILE = "weights.bin"
_PAGE = 4096
_EXTERNAL_FROM = 16 * 1024  # smaller tensors stay in the graph (see store_weights)


def host_kernel() -> str:
    """The quantization preset for this CPU: arm64, avx512_vnni or avx2.

    AVX-512 without VNNI gets the avx2 preset on purpose: its u8 x u8 kernels cannot saturate,
    while the avx512 preset's s8 weights can on VPMADDUBSW (see ONNX Runtime's quantization notes).
    """
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if {"avx512_vnni", "avx512vnni"} & flags:
        return "avx512_vnni"
    return "avx2"


def quantize_parts(parts: dict[str, Path], out_dir: Path, kernel: str, *,
                   only: Callable[[Path], list[str]] | None = None) -> tuple[dict[str, Path], dict]:
    """Dynamic int8 for this CPU's kernels; `only` names the nodes of each part to quantize (None:
    every product with a weight, and the embeddings)."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    preset = getattr(AutoQuantizationConfig, kernel)
    quantized = {}
    for role, part in parts.items():
        # Only products with a weight are quantized. Attention's activation x activation products
        # (QK^T, AV) would re-quantize the whole cached keys and values at every decoding step;
        # kept in fp32 they cost less (ORT profile of FLAN-T5-Large's decoder: -17% per token).
        config = preset(is_static=False, per_channel=True, nodes_to_exclude=activation_matmuls(part),
                        nodes_to_quantize=only(part) if only else None)
        try:
            quantizer = ORTQuantizer.from_pretrained(part.parent, file_name=part.name)
            quantizer.quantize(quantization_config=config, save_dir=out_dir / role,
                               use_external_data_format=_needs_external_data(part))
        except Exception as e:
            raise ExportError(f"{part.name}: int8 quantization failed ({one_line(e)})") from None
        quantized[role] = out_dir / role / f"{part.stem}_quantized.onnx"
        remove_onnx(part)  # frees the disk early: FLAN-T5-Large's fp32 parts are gigabytes
    info = {"kernel": kernel, "method": "dynamic", "per_channel": config.per_channel,
            "matmuls": "weights only (activation x activation products stay fp32)",
            "weights": config.weights_dtype.name, "activations": config.activations_dtype.name,
            "reduce_range": config.reduce_range,
            "operators": [getattr(op, "value", op) for op in config.operators_to_quantize]}
    return quantized, info


# The MatMuls that stay out of 4 bits, by the name optimum's T5 export gives them (node names
# follow the PyTorch modules). T5's FFN output projection (`wo`) reads activations with large
# outliers (the reason T5 overflows in fp16), and a 4-bit LM head picks the next token from
# logits whose top two are often close. They get int8, not fp32: on the tiny T5 (teacher-forced
# top-1 against ONNX fp32 over 500 positions, tests/support/t5_fixtures' checkpoint) fp32 for
# them gave 77.8% against int8's 75.2% and everything in int4 70.8%, while fp32 made the bundle
# 2.4x the size; FLAN-T5-Large's `wo` alone is a third of its FFN weights.
INT4_EXCLUDED = ("/DenseReluDense/wo/MatMul", "/lm_head/MatMul")
# The encoder stays int8 whole. It runs once per document over up to 512 tokens, so its products
# are matrix x matrix and bound by arithmetic, where MLAS's int8 GEMM beats MatMulNBits:
# FLAN-T5-Large's encoder took 1.67 s in int8 against 2.42 s in int4 (1.98 s with prepacking,
# which the runtime turns off for the encoder), 2 threads, AVX2. The decoder reads every weight
# once per token for a vector, bound by memory, where 4 bits pay: 25.5 ms a token against 29.9.
INT4_PARTS = ("decoder_model", "decoder_with_past_model")
# 32 rows of a weight column share one scale. Same measure, tiny T5: block 16 79.0%, 32 75.2%, 64
# and 128 76.4% (its K of 64 makes those one block per column: per-channel; 128 pads to twice
# the bytes); the int8 bundle 95.0%. 16 leads by 19 positions of 500 on one random model, which
# a trained one may not repeat; 32 is onnxruntime-genai's CPU default, and 16 would add a 4-byte scale to every 8 bytes
# of weights where 32 adds one per 16. Speed was not compared: this machine was busy.
# Speed, FLAN-T5-Large's architecture, 2 threads, AVX-512 VNNI (t5_speed, onnx-int4-b128): blocks
# of 128 decoded a token in 24.0 against 26.5 ms for 32, and the bundle is 597 against 627 MB; the
# trained tiny T5 agreed with fp32 as well with either. What 128 costs on a trained FLAN-T5-Large is
# not measured, so 32 stays the default and `sumctl export t5 --int4-block` chooses.
INT4_BLOCK_SIZE = T5_INT4_BLOCK_SIZE
# MLAS's int4 kernels with int8 activations (VNNI where the CPU has it): what onnxruntime-genai
# ships for CPU; level 1 (fp32 activations) dequantizes each block to fp32 first.
INT4_ACCURACY_LEVEL = 4


@dataclass(frozen=True)
class BlockwiseLayout:
    """Which weight products of a T5 become ONNX Runtime's MatMulNBits, and how: `bits` per weight
    in blocks of `block_size` rows of a column with one scale each; `parts` (the export's graphs)
    where that applies; `excluded` (node-name endings) that get dynamic int8 instead. Everything
    else with a weight, the embeddings included, gets dynamic int8 (quantize_parts)."""

    bits: int
    parts: tuple[str, ...]
    excluded: tuple[str, ...]
    block_size: int = INT4_BLOCK_SIZE
    accuracy_level: int = INT4_ACCURACY_LEVEL


INT4_LAYOUT = BlockwiseLayout(bits=4, parts=INT4_PARTS, excluded=INT4_EXCLUDED)
# int8-block: every weight product of every graph 8-bit blockwise. At accuracy level 4 MLAS
# quantizes each row's activations to int8 in blocks of their own, where dynamic int8 takes one
# scale over the whole input: so a row's result no longer depends on the rows beside it (the
# documents of a batch). The embeddings stay dynamic int8 (a weight-only Gather, row-independent
# too): ORT's quantizer makes a blockwise Gather in 4 bits only.
INT8_BLOCK_LAYOUT = BlockwiseLayout(bits=8, parts=("encoder_model", "decoder_model", "decoder_with_past_model"),
                                    excluded=())


def quantize_parts_blockwise(parts: dict[str, Path], out_dir: Path, kernel: str,
                             layout: BlockwiseLayout = INT4_LAYOUT) -> tuple[dict[str, Path], dict]:
    """Weight-only blockwise quantization (MatMulNBits) of `layout`'s weight MatMuls; the rest
    with a weight (the layout's exclusions, the embeddings, the parts it leaves out) get
    quantize_parts' dynamic int8 first.

    int8 goes first because ORT's int8 quantizer needs every MatMul input's type from ONNX shape
    inference, which knows nothing of the com.microsoft MatMulNBits. Like int8, each part is
    quantized before the decoders are merged: both quantizers are deterministic, so the two
    decoders' copies of a shared weight are identical bytes and the merge keeps one."""
    import onnx

    DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = _matmul_nbits_quantizer()
    untouched = {part for role, part in parts.items() if role not in layout.parts}
    excluded = {role: excluded_matmuls(part, layout.excluded) for role, part in parts.items() if role in layout.parts}
    int8, int8_info = quantize_parts(parts, out_dir / "int8", kernel,
                                     only=lambda part: None if part in untouched
                                     else _dynamic_int8_nodes(part, layout.excluded))
    quantized = dict(int8)
    for role in layout.parts:
        part = int8[role]
        model = onnx.load(str(part))
        config = DefaultWeightOnlyQuantConfig(block_size=layout.block_size, is_symmetric=True,
                                              accuracy_level=layout.accuracy_level, bits=layout.bits)
        try:
            # Already int8 (not MatMul) after quantize_parts; named too, so that they can never
            # become blockwise whatever the int8 step does.
            quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=excluded[role], algo_config=config)
            quantizer.process()
        except Exception as e:
            raise ExportError(f"{part.name}: {layout.bits}-bit blockwise quantization failed ({one_line(e)})") from None
        quantized[role] = out_dir / role / part.name
        quantized[role].parent.mkdir(parents=True, exist_ok=True)
        onnx.save(quantizer.model.model, str(quantized[role]))
        remove_onnx(part)
    info = {"method": f"weight-only int{layout.bits} blockwise (MatMulNBits)", "bits": layout.bits,
            "block_size": layout.block_size, "symmetric": True, "accuracy_level": layout.accuracy_level,
            f"int{layout.bits}_parts": list(layout.parts),
            "int8_matmuls": sorted({name.rsplit("/", 2)[-2] for names in excluded.values() for name in names}),
            "int8": int8_info}
    return quantized, info


def _matmul_nbits_quantizer():
    """ORT's int4 quantizer classes. Importing the module calls logging.basicConfig(level=INFO),
    which would print every INFO record of this process from then on (ORT's int8 quantizer logs
    one per tensor) over the export's progress display: the root logger is put back as it was."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer


def excluded_matmuls(part: Path, endings: tuple[str, ...]) -> list[str]:
    """The MatMul nodes of an ONNX file whose names end with one of `endings`."""
    import onnx

    if not endings:
        return []
    model = onnx.load(str(part), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(endings)]


def _dynamic_int8_nodes(part: Path, endings: tuple[str, ...]) -> list[str]:
    import onnx

    model = onnx.load(str(part), load_external_data=False)
    return excluded_matmuls(part, endings) + [n.name for n in model.graph.node if n.op_type == "Gather"]


def activation_matmuls(part: Path) -> list[str]:
    """The MatMul nodes of an ONNX file whose operands are both computed (no weight operand)."""
    import onnx

    model = onnx.load(str(part), load_external_data=False)
    found = []

    def walk(graph, known: set[str]) -> None:
        known = known | {t.name for t in graph.initializer}
        known |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            if node.op_type == "MatMul" and not any(i in known for i in node.input):
                found.append(node.name)
            for attribute in node.attribute:
                for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    walk(sub, known)

    walk(model.graph, set())
    return found


# ONNX Runtime's T5 fusion (onnxruntime.transformers) finds a decoder's attention blocks by the
# names ORT's own T5 export gives the cache (past_key_self_0, present_value_cross_3); optimum
# names them past_key_values.0.decoder.key and present.3.encoder.value. Only the self-attention
# cache is renamed for the fusion (and back after it, so the bundle's interface does not change),
# which is how the cross-attention blocks are kept out of it: see fuse_decoder_attention.
_OPTIMUM_SELF_CACHE = re.compile(r"(past_key_values|present)\.(\d+)\.decoder\.(key|value)")
_ORT_SELF_CACHE = re.compile(r"(past|present)_(key|value)_self_(\d+)")
FUSED_ATTENTION = "MultiHeadAttention"
DECODER_PARTS = ("decoder_model", "decoder_with_past_model")


def _ort_cache_name(name: str) -> str:
    m = _OPTIMUM_SELF_CACHE.fullmatch(name)
    if not m:
        return name
    return f"{'past' if m[1] == 'past_key_values' else 'present'}_{m[3]}_self_{m[2]}"


def _optimum_cache_name(name: str) -> str:
    m = _ORT_SELF_CACHE.fullmatch(name)
    if not m:
        return name
    return f"{'past_key_values' if m[1] == 'past' else 'present'}.{m[3]}.decoder.{m[2]}"


def _rename_values(graph, rename: Callable[[str], str]) -> None:
    for value in list(graph.input) + list(graph.output):
        value.name = rename(value.name)
    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]


def fuse_decoder_attention(parts: dict[str, Path], *, heads: int, head_dim: int, layers: int) -> dict:
    """Each self-attention block of the two fp32 decoders becomes one ONNX Runtime
    MultiHeadAttention node (ORT's own T5 fusion), with the RMS norms and the GELU fused as well;
    done before quantization, which finds the projections' MatMuls where they were.

    A decoder step of FLAN-T5-Large ran some 1,300 small nodes around its products; a
    self-attention block's reshapes, transposes, the cache's concatenation, the position bias
    and the softmax are one kernel call now. The cross-attention blocks stay as exported: their
    MatMuls broadcast one input's cached keys and values over its beams, which
    MultiHeadAttention does not (fused, beam 4 held 306 MB more on FLAN-T5-Large, copying them
    per beam), and fusing them too gained no decode time beyond this machine's noise. ORT's
    fused position-bias node (RelativePositionBias) has no CPU kernel, so that fusion is left
    out. If any block does not match (another T5 variant's graph), both decoders stay as they
    were and the result says why.
    """
    import onnx

    fused_models = {}
    for role in DECODER_PARTS:
        fused = _fused_decoder(parts[role], heads, heads * head_dim, layers)
        if isinstance(fused, str):
            return {"attention": "unfused", "reason": f"{role}: {fused}"}
        fused_models[role] = fused
    # Written only once both decoders fused; the weights go back in one graph at a time, so that
    # FLAN-T5-Large's two fp32 decoders are not in memory twice over.
    for role in DECODER_PARTS:
        model, weights = fused_models.pop(role)
        for tensor in model.graph.initializer:
            if tensor.name in weights:
                tensor.raw_data = weights.pop(tensor.name)
        external = _needs_external_data(parts[role])
        remove_onnx(parts[role])
        onnx.save(model, str(parts[role]), save_as_external_data=external, all_tensors_to_one_file=True,
                  location=f"{parts[role].name}_data")
    return {"attention": FUSED_ATTENTION, "fused_blocks": layers, "fused": "self-attention",
            "by": "onnxruntime.transformers (T5)"}


def _fused_decoder(part: Path, heads: int, hidden_size: int, blocks: int):
    """(the fused graph without its large weights, those weights by name), or why not."""
    import contextlib
    import io

    import onnx

    model = onnx.load(str(part))
    weights = _detach_weights(model.graph)
    _rename_values(model.graph, _ort_cache_name)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the fusion prints every node it makes
            fused = _t5_fusion(model, heads, hidden_size)
    except Exception as e:
        return one_line(e)
    found = sum(node.op_type == FUSED_ATTENTION for node in fused.graph.node)
    if found != blocks:
        return f"{found} of {blocks} attention blocks matched"
    _rename_values(fused.graph, _optimum_cache_name)
    try:
        return _with_types(fused), weights
    except Exception as e:
        return f"shape inference failed ({one_line(e)})"


def _detach_weights(graph) -> dict[str, bytes]:
    """Take the large tensors' bytes out of `graph` (their names, types and shapes stay), by name.

    The fusion reads only small constants (shapes, scalars), but its shape inference serializes
    the model, more than once: FLAN-T5-Large's fp32 decoder is 1.9 GB, near protobuf's 2 GB
    limit, and without its weights the graph is a few megabytes."""
    detached = {}
    for tensor in graph.initializer:
        if tensor.data_location == tensor.EXTERNAL:
            continue
        _as_raw_data(tensor)
        if len(tensor.raw_data) >= _EXTERNAL_FROM:
            detached[tensor.name] = tensor.raw_data
            tensor.ClearField("raw_data")
    return detached


def _as_raw_data(tensor) -> None:
    """An inline tensor's values as raw bytes, whatever typed field the writer used (the
    quantizer writes zero points as int32 varints)."""
    from onnx import numpy_helper

    if not tensor.HasField("raw_data"):
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))


def _with_types(model):
    """`model` with the type and shape of every value recorded, by ORT's symbolic shape
    inference, which knows its own operators: the quantizers that follow take the MatMuls'
    input types from ONNX's shape inference, which knows nothing of MultiHeadAttention and
    would leave the output projections' inputs untyped (and the int8 quantizer fails on them)."""
    from onnx import helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


def _t5_fusion(model, heads: int, hidden_size: int):
    """ORT's T5 graph fusions on `model`, with the position-bias fusion left out (its node runs
    on CUDA only)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model_t5 import T5OnnxModel

    class CpuT5Fusion(T5OnnxModel):
        def preprocess(self):
            self.adjust_reshape_and_expand()

    options = FusionOptions("t5")
    optimizer = CpuT5Fusion(model, heads, hidden_size)
    optimizer.optimize(options)
    optimizer.topological_sort()
    return optimizer.model


def store_weights(folder: Path, files: list[str]) -> dict:
    """Move the large tensors of the bundle's ONNX graphs into WEIGHTS_FILE, each distinct one once,
    and leave the graphs as compact protobufs (see compact_graph).

    T5's encoder and decoder both embed tokens with the shared matrix, which the exporter writes
    into both graphs; stored once, FLAN-T5-Large's int8 bundle is 31 MB smaller. Each tensor
    starts on a page so that ONNX Runtime maps it from the file instead of copying it. Tensors
    under 16 KiB (norms, FLAN-T5-Large's per-channel scales and zero points) stay in the graph: a
    page each would waste more than they hold, and with those scales and zero points read from
    the file rather than the graph, ORT 1.32 held about 730 MB more anonymous memory after one
    FLAN-T5-Large encoder run (same fused graph, same outputs; measured, cause not traced).
    """
    import hashlib

    import onnx
    from onnx.external_data_helper import load_external_data_for_model, set_external_data

    stats = {"tensors": 0, "shared": 0, "shared_bytes": 0}
    stored: dict[str, tuple[int, int]] = {}  # sha256 of the bytes -> (offset, length)
    old_data: set[str] = set()
    with open(folder / WEIGHTS_FILE, "wb") as out:
        for name in files:
            path = folder / name
            # Parsed once: note where any tensor lives outside the graph, then read those bytes in.
            model = onnx.load(str(path), load_external_data=False)
            old_data |= {entry.value for tensor in _initializers(model.graph)
                         for entry in tensor.external_data if entry.key == "location"}
            load_external_data_for_model(model, str(folder))
            compact_graph(model)
            for tensor in _initializers(model.graph):
                # Read once: each read of raw_data copies the bytes (gigabytes for an fp32 model).
                data = tensor.raw_data if tensor.HasField("raw_data") else b""
                if len(data) < _EXTERNAL_FROM:
                    continue
                key = hashlib.sha256(data).hexdigest()
                if key in stored:
                    stats["shared"] += 1
                    stats["shared_bytes"] += len(data)
                else:
                    offset = -(-out.tell() // _PAGE) * _PAGE
                    out.seek(offset)
                    out.write(data)
                    stored[key] = (offset, len(data))
                set_external_data(tensor, WEIGHTS_FILE, offset=stored[key][0], length=stored[key][1])
                tensor.ClearField("raw_data")
                stats["tensors"] += 1
            onnx.save(model, str(path))
        out.flush()
        os.fsync(out.fileno())
    for name in old_data - {WEIGHTS_FILE}:
        (folder / name).unlink(missing_ok=True)
    return stats


def compact_graph(model) -> None:
    """Drop what ONNX Runtime does not read, and store identical small tensors once.

    - Tensors become raw bytes (the quantizer writes zero points as int32 varints), and an inline
      tensor that repeats another of the same graph is dropped for it: the per-channel zero
      points are all 128, hundreds of identical arrays.
    - Intermediate tensor names become short ids; node names and value_info (shapes that ORT
      infers again at load) go. The graph's own inputs and outputs keep their names: they are
      the interface the runtime binds. The cost is readability: ORT profiles of a bundle name
      each node by its operator only.

    FLAN-T5-Large int8: the two graphs went from 5.9 MB to 3.0 MB, which is what keeps the bundle
    no larger than CTranslate2's converted model.
    """
    import numpy as np

    interface = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in interface:
            return name
        if name not in short:
            short[name] = np.base_repr(len(short), 36).lower()
        return short[name]

    for graph in _graphs(model.graph):
        kept: dict[tuple, str] = {}  # (type, shape, bytes) -> the name the first copy got
        repeats = []
        for index, tensor in enumerate(graph.initializer):
            if tensor.data_location != tensor.EXTERNAL:
                _as_raw_data(tensor)
            small = tensor.data_location != tensor.EXTERNAL and tensor.ByteSize() < _EXTERNAL_FROM
            key = (tensor.data_type, tuple(tensor.dims), tensor.raw_data) if small else None
            if key is not None and key in kept and tensor.name not in interface:
                short[tensor.name] = kept[key]  # its readers now read the first copy
                repeats.append(index)
                continue
            tensor.name = rename(tensor.name)
            if key is not None:
                kept.setdefault(key, tensor.name)
        for index in reversed(repeats):
            del graph.initializer[index]
        del graph.value_info[:]
        for node in graph.node:
            node.name = ""
            node.input[:] = [rename(n) for n in node.input]
            node.output[:] = [rename(n) for n in node.output]
        if graph is not model.graph:  # a branch's inputs and outputs are positional
            for value in list(graph.input) + list(graph.output):
                value.name = rename(value.name)


def _graphs(graph):
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from _graphs(sub)


def _initializers(graph):
    for sub in _graphs(graph):
        yield from sub.initializer


def merge_decoders(decoder: Path, decoder_with_past: Path, target: Path) -> None:
    from optimum.onnx.graph_transformations import merge_decoders

    # check_and_save_model writes external data only when it finds an existing data file (or
    # FORCE_ONNX_EXTERNAL_DATA is set); a merged graph over protobuf's 2 GB limit needs it.
    external = _needs_external_data(decoder)
    previous = os.environ.get("FORCE_ONNX_EXTERNAL_DATA")
    if external:
        os.environ["FORCE_ONNX_EXTERNAL_DATA"] = "1"
    try:
        merge_decoders(decoder, decoder_with_past, strict=False, save_path=target)
    except Exception as e:
        raise ExportError(f"{decoder.name}: merging the decoders failed ({one_line(e)})") from None
    finally:
        if external:
            if previous is None:
                os.environ.pop("FORCE_ONNX_EXTERNAL_DATA", None)
            else:
                os.environ["FORCE_ONNX_EXTERNAL_DATA"] = previous


_TWO_GB_MARGIN = int(1.8 * 2**30)


def _onnx_bytes(part: Path) -> int:
    return sum(p.stat().st_size for p in part.parent.glob(f"{part.name}*") if p.is_file())


def _needs_external_data(part: Path) -> bool:
    return _onnx_bytes(part) > _TWO_GB_MARGIN


def move_onnx(part: Path, target: Path) -> None:
    external = [p for p in part.parent.glob(f"{part.name}*") if p != part]
    if external:  # external data is referenced by file name: re-save it under the new one
        import onnx

        model = onnx.load(str(part))
        onnx.save(model, str(target), save_as_external_data=True, location=f"{target.name}_data",
                  all_tensors_to_one_file=True)
        remove_onnx(part)
    else:
        shutil.move(part, target)


def remove_onnx(part: Path) -> None:
    for p in part.parent.glob(f"{part.name}*"):
        p.unlink(missing_ok=True)
    for p in part.parent.glob("*.onnx_data"):  # torch's exporter may name external data this way
        if p.name.startswith(part.stem):
            p.unlink(missing_ok=True)

