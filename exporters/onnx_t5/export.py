"""`sumctl export t5`: a (FLAN-)T5 checkpoint -> an ONNX bundle with a KV cache, int8 by default.

Steps, each shown as it runs:
1. load     - vet the checkpoint (safetensors, model_type t5/mt5, no remote code) and load it;
2. export   - optimum exports the encoder, the first-step decoder and the with-past decoder;
3. quantize - (int8) dynamic int8 with ORTQuantizer, kernels picked for this CPU;
4. merge    - the two decoders become one graph (an If on `use_cache_branch`) whose weights
              are stored once; the separate decoder files are dropped;
   store    - the graphs' weights move into one page-aligned weights.bin, each distinct
              tensor once (the encoder and decoder share the token embedding);
5. verify   - the bundle, run by sumctl's own runtime, against the PyTorch model on built-in
              inputs: fp32 must reproduce the greedy tokens exactly, int8 records its agreement;
6. hash     - every file's sha256 goes into the manifest, written last.

Quantizing before merging (not after) is deliberate: the two decoders share their weights, so
their int8 copies are identical bytes and the merge keeps one of each; quantizing the merged
graph instead repeats the quantization nodes in both branches (a larger file, measured).

Everything is built in a hidden folder beside `out` and renamed into place at the end, so a
failed or interrupted export leaves nothing that looks like a bundle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import time
import warnings
from pathlib import Path

from sumctl.runtime.bundle import Bundle, Manifest, package_versions, write_manifest
from sumctl.runtime.bundle.configs import (CONFIG, DECODER, ENCODER, TOKENIZER, WEIGHTS, OnnxT5Config,
                                           seq2seq_generation)
from sumctl.exporters.base import Progress, SilentProgress, check_out_dir, export_bundle, one_line
from sumctl.exporters.errors import ExportError
from sumctl.runtime.prompts import default_templates, fill

from sumctl.exporters.checkpoint import require_architecture, resolve_checkpoint, source_info

SUPPORTED_MODEL_TYPES = ("t5", "mt5")
TASK = "text2text-generation-with-past"
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"
WEIGHTS_FILE = "weights.bin"
_PAGE = 4096
_EXTERNAL_FROM = 16 * 1024  # smaller tensors stay in the graph (see store_weights)
VERIFY_MAX_NEW_TOKENS = 32

# Short meeting snippets the export is checked on: built in, so a check never needs data.
VERIFICATION_INPUTS = (
    "Alice: Let's start with the budget. We have twelve thousand euros left for the quarter.\n"
    "Bob: Marketing wants half of it for the trade fair.\n"
    "Carol: Then the user study has to wait until January.\n"
    "Alice: Okay, decision: the fair gets six thousand, and Carol writes a smaller study plan by Friday.",
    "Project Manager: The remote control prototype is ready.\n"
    "Industrial Designer: The casing is curved and the buttons are rubber, as agreed.\n"
    "Marketing: Users in the survey asked for a scroll wheel and a voice feature.\n"
    "User Interface: Voice is too expensive for this price. We can add the scroll wheel.\n"
    "Project Manager: Fine, scroll wheel yes, voice no. Next meeting we evaluate the design.",
    "Professor: The new speech recognizer lowers the error rate on the digits task.\n"
    "PhD A: Only with the close-talking microphone. The far-field numbers are still bad.\n"
    "PhD B: We could train on noisy data. I can prepare a training set next week.\n"
    "Professor: Good. Grad C, please compare it against last year's baseline.",
)


def export_t5(model: str, out: str | os.PathLike, *, quantize: str = "int8", max_input_tokens: int = 512,
              revision: str | None = None, allow_pickle: bool = False, verify: bool = True,
              verify_max_new_tokens: int = VERIFY_MAX_NEW_TOKENS, verify_inputs: int | None = None,
              label: str = "", name: str | None = None, progress: Progress | None = None) -> Bundle:
    """Export a T5 checkpoint to a verified ONNX bundle at `out`.

    Args:
        model: a checkpoint folder, or a hub id (downloaded once; safetensors only unless
            `allow_pickle`).
        out: the bundle folder to create; it must be absent or empty.
        quantize: "int8" (dynamic, for this CPU's kernels) or "none" (fp32).
        max_input_tokens: the transcript budget per chapter.
        revision: the hub revision to download.
        allow_pickle: accept .bin/.pt weights (pickle runs code: only for checkpoints you trust).
        verify: compare the bundle's greedy tokens with PyTorch's on built-in meeting snippets,
            and record the agreement; False (the speed benchmark's random weights) marks the
            bundle unverified.
        verify_max_new_tokens, verify_inputs: how long and how many of those comparisons.
        label, name: shown beside every summary and in `sumctl models list`.
        progress: reports each step (the CLI renders it); None: silent.
    """
    if quantize not in ("int8", "none"):
        raise ExportError(f"unknown --quantize {quantize!r} (use int8 or none)")
    if max_input_tokens < 16:
        raise ExportError(f"--max-input-tokens {max_input_tokens} is too small (use 16 or more)")
    out = check_out_dir(out)
    path = resolve_checkpoint(model, revision=revision, allow_pickle=allow_pickle)
    config = require_architecture(path, SUPPORTED_MODEL_TYPES, "t5")
    steps = progress or SilentProgress()

    def build(work: Path) -> Path:
        with _quiet_libraries():
            return _export(model, path, config, work, steps, quantize=quantize,
                           max_input_tokens=max_input_tokens, revision=revision, verify=verify,
                           verify_max_new_tokens=verify_max_new_tokens, verify_inputs=verify_inputs,
                           label=label, name=name or out.name).path

    return export_bundle(out, build)


def _export(model_id, path, config, work, steps, *, quantize, max_input_tokens, revision, verify,
            verify_max_new_tokens, verify_inputs, label, name) -> Bundle:
    try:
        import torch
        import transformers
        from optimum.exporters.onnx import onnx_export_from_model
    except ImportError as e:
        raise ExportError(f"exporting needs the export extra ({e.name} is missing): "
                          "pip install 'sumctl[export]'") from None

    staging, bundle_dir = work / "onnx", work / "bundle"
    bundle_dir.mkdir()

    with steps.step(f"Loading {path.name} ({config.get('model_type')})"):
        torch_model, tokenizer = _load(path, transformers, torch)

    references = None
    if verify:
        # Before the export: optimum's tracing leaves the model configured for it.
        with steps.step("Generating reference outputs with PyTorch"):
            references = reference_outputs(torch_model, tokenizer, default_templates()["medium"],
                                           max_new_tokens=verify_max_new_tokens, count=verify_inputs)

    with steps.step("Exporting to ONNX with a KV cache (optimum)"):
        try:
            onnx_export_from_model(torch_model, staging, task=TASK, no_post_process=True,
                                   do_validation=False, preprocessors=[])
        except Exception as e:
            raise ExportError(f"{path}: ONNX export failed ({one_line(e)})") from None
        parts = {role: staging / f"{role}.onnx" for role in ("encoder_model", "decoder_model",
                                                              "decoder_with_past_model")}
        missing = [p.name for p in parts.values() if not p.is_file()]
        if missing:
            raise ExportError(f"{path}: the ONNX export did not produce {', '.join(missing)}")

    quant_info = {}
    if quantize == "int8":
        kernel = host_kernel()
        with steps.step(f"Quantizing to int8 (dynamic, {kernel} kernels)"):
            parts, quant_info = _quantize(parts, work / "int8", kernel)

    with steps.step("Merging the decoders into one graph (one copy of the weights)"):
        _merge(parts["decoder_model"], parts["decoder_with_past_model"], bundle_dir / DECODER_FILE)
        _move_onnx(parts["encoder_model"], bundle_dir / ENCODER_FILE)
        for part in parts.values():  # nothing unmerged may linger, even in the scratch folder
            _remove_onnx(part)
        tokenizer.save_pretrained(bundle_dir)
        torch_model.config.save_pretrained(bundle_dir)
        (bundle_dir / "generation_config.json").unlink(missing_ok=True)

    with steps.step("Storing the weights once, in one page-aligned file"):
        storage = store_weights(bundle_dir, [ENCODER_FILE, DECODER_FILE])
    steps.note(f"{storage['tensors']} tensors, {storage['shared']} shared by both graphs "
               f"({storage['shared_bytes'] / 2**20:.0f} MB stored once)")

    manifest = Manifest(
        backend="onnx-t5",
        source=source_info(model_id, path, revision),
        quantization="int8" if quantize == "int8" else "fp32",
        max_input_tokens=max_input_tokens,
        prompts=default_templates(),
        generation=generation_defaults(path),
        backend_config=_backend_config(torch_model.config, tokenizer, quant_info),
        name=name,
        label=label,
        versions=package_versions("onnxruntime", "onnx", "optimum", "optimum-onnx", "transformers",
                                  "torch", "tokenizers"),
    )
    bundle = Bundle(bundle_dir, manifest)

    del torch_model
    if references is not None:
        with steps.step("Verifying the bundle against the PyTorch outputs"):
            manifest.verification = verify_bundle(bundle, references, quantized=quantize == "int8")
        steps.note(_describe(manifest.verification))
    else:
        manifest.verification = {"verified": False, "reason": "skipped at export (verify=False)"}

    with steps.step("Hashing files and writing the manifest"):
        return write_manifest(bundle_dir, manifest)


def _load(path: Path, transformers, torch):
    # safetensors unless the user allowed pickle and nothing else exists (checked earlier).
    use_safetensors = any(path.glob("*.safetensors"))
    try:
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(
            path, use_safetensors=use_safetensors, trust_remote_code=False, torch_dtype=torch.float32)
    except Exception as e:
        raise ExportError(f"{path}: cannot load the model ({one_line(e)})") from None
    model.eval()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    except Exception as e:
        raise ExportError(f"{path}: cannot load the tokenizer ({one_line(e)}); the folder needs "
                          "tokenizer.json or spiece.model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{path}: the tokenizer has no fast (tokenizer.json) form, which the runtime "
                          "needs; add tokenizer.json to the checkpoint")
    if tokenizer.eos_token_id != model.config.eos_token_id:
        raise ExportError(f"{path}: the tokenizer's </s> id {tokenizer.eos_token_id} differs from the "
                          f"model's eos_token_id {model.config.eos_token_id}")
    return model, tokenizer


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


def _quantize(parts: dict[str, Path], out_dir: Path, kernel: str) -> tuple[dict[str, Path], dict]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    preset = getattr(AutoQuantizationConfig, kernel)
    quantized = {}
    for role, part in parts.items():
        # Only products with a weight are quantized. Attention's activation x activation products
        # (QK^T, AV) would re-quantize the whole cached keys and values at every decoding step;
        # kept in fp32 they cost less (ORT profile of FLAN-T5-Large's decoder: -17% per token).
        config = preset(is_static=False, per_channel=True, nodes_to_exclude=activation_matmuls(part))
        try:
            quantizer = ORTQuantizer.from_pretrained(part.parent, file_name=part.name)
            quantizer.quantize(quantization_config=config, save_dir=out_dir / role,
                               use_external_data_format=_needs_external_data(part))
        except Exception as e:
            raise ExportError(f"{part.name}: int8 quantization failed ({one_line(e)})") from None
        quantized[role] = out_dir / role / f"{part.stem}_quantized.onnx"
        _remove_onnx(part)  # frees the disk early: FLAN-T5-Large's fp32 parts are gigabytes
    info = {"kernel": kernel, "method": "dynamic", "per_channel": config.per_channel,
            "matmuls": "weights only (activation x activation products stay fp32)",
            "weights": config.weights_dtype.name, "activations": config.activations_dtype.name,
            "reduce_range": config.reduce_range,
            "operators": [getattr(op, "value", op) for op in config.operators_to_quantize]}
    return quantized, info


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
    from onnx import numpy_helper

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
            if tensor.data_location != tensor.EXTERNAL and not tensor.HasField("raw_data"):
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
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


def _merge(decoder: Path, decoder_with_past: Path, target: Path) -> None:
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


def _move_onnx(part: Path, target: Path) -> None:
    external = [p for p in part.parent.glob(f"{part.name}*") if p != part]
    if external:  # external data is referenced by file name: re-save it under the new one
        import onnx

        model = onnx.load(str(part))
        onnx.save(model, str(target), save_as_external_data=True, location=f"{target.name}_data",
                  all_tensors_to_one_file=True)
        _remove_onnx(part)
    else:
        shutil.move(part, target)


def _remove_onnx(part: Path) -> None:
    for p in part.parent.glob(f"{part.name}*"):
        p.unlink(missing_ok=True)
    for p in part.parent.glob("*.onnx_data"):  # torch's exporter may name external data this way
        if p.name.startswith(part.stem):
            p.unlink(missing_ok=True)


def generation_defaults(path: Path | None) -> dict:
    """sumctl's T5 defaults, overridden by what the fine-tune's generation_config.json sets."""
    try:
        source = json.loads((path / "generation_config.json").read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        source = {}
    return seq2seq_generation(source if isinstance(source, dict) else {})


def _backend_config(config, tokenizer, quant_info: dict) -> dict:
    return OnnxT5Config(
        files={ENCODER: ENCODER_FILE, DECODER: DECODER_FILE, WEIGHTS: WEIGHTS_FILE,
               TOKENIZER: "tokenizer.json", CONFIG: "config.json"},
        special_tokens={"pad": config.pad_token_id, "eos": config.eos_token_id,
                        "decoder_start": config.decoder_start_token_id},
        decoder={"merged": True, "cache_branch_input": "use_cache_branch",
                 "layers": config.num_decoder_layers, "heads": config.num_heads,
                 "head_dim": config.d_kv, "vocab_size": config.vocab_size},
        model_type=config.model_type,
        clean_up_tokenization_spaces=bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)),
        batch_size=4, quantization=quant_info).to_dict()


# -- verification ----------------------------------------------------------------------------------


def reference_outputs(torch_model, tokenizer, template: str, *, max_new_tokens: int = VERIFY_MAX_NEW_TOKENS,
                      count: int | None = None) -> list[dict]:
    """PyTorch's greedy output on each built-in input: what the bundle must reproduce."""
    import torch
    from transformers import GenerationConfig

    config = torch_model.config
    # A fresh config: the fine-tune's own generation settings (beams, n-gram bans) do not apply.
    greedy = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, do_sample=False,
                              decoder_start_token_id=config.decoder_start_token_id,
                              pad_token_id=config.pad_token_id, eos_token_id=config.eos_token_id)
    references = []
    for text in VERIFICATION_INPUTS[:count or len(VERIFICATION_INPUTS)]:
        prompt = fill(template, text)
        ids = tokenizer(prompt).input_ids
        with torch.inference_mode():
            output = torch_model.generate(input_ids=torch.tensor([ids]),
                                          attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                          generation_config=greedy)[0].tolist()[1:]
        references.append({"prompt": prompt, "input_ids": ids, "output_ids": output,
                           "text": tokenizer.decode(output, skip_special_tokens=True),
                           "max_new_tokens": max_new_tokens})
    return references


def verify_bundle(bundle: Bundle, references: list[dict], *, quantized: bool) -> dict:
    """Greedy outputs of the bundle, run by sumctl's own runtime, against PyTorch's.

    fp32 must match token for token (and decode to the same text), or the export fails. int8
    cannot match exactly; its token agreement and ROUGE-L against the fp32 PyTorch output are
    recorded for users to judge.
    """
    from sumctl.runtime.backends.onnx_t5 import OnnxT5Backend

    backend = OnnxT5Backend(bundle, threads=None)
    started = time.perf_counter()
    try:
        per_input, equal, positions, rouge = [], 0, 0, []
        for i, ref in enumerate(references):
            ids, reference = ref["input_ids"], ref["output_ids"]
            if backend.encode(ref["prompt"]) != ids:
                raise ExportError(f"{bundle.file('tokenizer')}: the bundle's tokenizer does not reproduce "
                                  f"the checkpoint's tokenization (verification input {i + 1})")
            produced = backend.generate_ids([ids], max_new_tokens=ref["max_new_tokens"])[0]
            same = sum(a == b for a, b in zip(reference, produced))
            span = max(len(reference), len(produced), 1)
            equal, positions = equal + same, positions + span
            out_text = backend.decode(produced)
            score = _rouge_l(ref["text"], out_text)
            rouge.append(score)
            per_input.append({"input_tokens": len(ids), "reference_tokens": len(reference),
                              "bundle_tokens": len(produced), "token_agreement": round(same / span, 4),
                              "identical": reference == produced, "rouge_l": round(score, 4)})
            if not quantized and (reference != produced or ref["text"] != out_text):
                first = next((j for j, (a, b) in enumerate(zip(reference, produced)) if a != b),
                             min(len(reference), len(produced)))
                what = "tokens" if reference != produced else "decoded text"
                raise ExportError(f"verification failed: the fp32 bundle's greedy {what} differ from "
                                  f"PyTorch's on built-in input {i + 1} (first at position {first}); "
                                  "nothing was written. Please report this with the checkpoint's config.json")
    finally:
        backend.close()
    return {
        "verified": True,
        "method": "greedy decoding, sumctl runtime vs transformers PyTorch fp32",
        "inputs": len(references),
        "max_new_tokens": references[0]["max_new_tokens"] if references else 0,
        "identical": all(p["identical"] for p in per_input),
        "token_agreement": round(equal / max(positions, 1), 4),
        "rouge_l": round(sum(rouge) / max(len(rouge), 1), 4),
        "requirement": "token-identical" if not quantized else "reported (int8)",
        "per_input": per_input,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _rouge_l(reference: str, candidate: str) -> float:
    from rouge_score import rouge_scorer

    if not reference.strip() and not candidate.strip():
        return 1.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return scorer.score(reference, candidate)["rougeL"].fmeasure


def _describe(verification: dict) -> str:
    if verification.get("requirement") == "token-identical":
        return (f"verified: greedy tokens identical to PyTorch on {verification['inputs']} inputs")
    return (f"verified: int8 vs PyTorch fp32 token agreement {verification['token_agreement']:.1%}, "
            f"ROUGE-L {verification['rouge_l']:.3f} on {verification['inputs']} inputs")


@contextlib.contextmanager
def _quiet_libraries():
    """The exporters' tracer warnings and info logs would bury the progress display."""
    try:
        import transformers
    except ImportError:  # _export says what to install
        transformers = None
    if transformers is not None:
        previous = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
    loggers = [logging.getLogger(n) for n in ("optimum", "onnxruntime", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if transformers is not None:
            transformers.logging.set_verbosity(previous)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
