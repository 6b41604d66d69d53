"""`sumctl train`: fine-tune a compact model on (transcript, reference) pairs, Tiny Titans' middle step.

T5-family checkpoints train with transformers' Seq2SeqTrainer, LLaMA-family causal LMs with its
Trainer; `lora=True` wraps the model in a peft LoRA adapter that is merged back into the base at
the end. The result in `out/` is a plain Hugging Face checkpoint (safetensors, the base's tokenizer
files) that `sumctl export t5|llama` takes as it is; a LoRA run also keeps the adapter itself,
unmerged, in `out/adapter/` (peft's safetensors), which `export_lora_gguf`
(exporters/gguf/) turns into a llama.cpp LoRA GGUF a few MB in size. Everything about the
run lives in `out/training/`: the settings (run.json), the examples exactly as trained
(examples.jsonl), the Trainer's checkpoints (for --resume), the loss curve and report.json.

The data and the prompts are built by exporters/train/data.py in the runtime's input shape.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from math import ceil
from pathlib import Path
from typing import Callable, Iterable

from sumctl.runtime.backends.gguf import prepare_llama_cpp
from sumctl.runtime.bundle import GenerationDefaults, package_versions
from sumctl.runtime.errors import first_line
from sumctl.runtime.fsutil import atomic_write_text
from sumctl.runtime.prompts import default_templates

from sumctl.exporters.checkpoint import read_config, resolve_checkpoint, source_info
from sumctl.exporters.train.config import TrainConfig, parse_lengths
from sumctl.exporters.train.hf_backend import CAUSAL, SEQ2SEQ, HFSummarizer, ModelShape, generation_defaults, reduce_input
from sumctl.exporters.errors import TrainError
from sumctl.exporters.train.data import IGNORE_INDEX, build_examples, check_enough, encode_all, load_examples, load_records, save_examples, select
from sumctl.exporters.train.report import compare, evaluate, format_scores, loss_points, plot_loss
from sumctl.benchmarks.eval.records import Dataset
from sumctl.runtime.jsonout import strict_dumps

# model_type -> what trains it; the same families `sumctl export` takes.
# gemma3_text (Gemma 3 270M/1B) trains as a LoRA for a llama.cpp base GGUF (export_lora_gguf);
# `sumctl export llama` does not write it.
FAMILIES = {"t5": SEQ2SEQ, "mt5": SEQ2SEQ, "llama": CAUSAL, "mistral": CAUSAL, "gemma3_text": CAUSAL}
DEFAULT_T5_INPUT_TOKENS = 512  # `sumctl export t5`'s default input budget
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "spiece.model", "tokenizer.model", "vocab.json",
                   "merges.txt", "chat_template.jinja", "chat_template.json")
RESUME_KEYS = ("base_sha256", "data_sha256", "kind", "lora", "lengths", "default_length",
               "max_input_tokens", "long_inputs", "drop_overlong", "lora_r", "lora_alpha",
               "lora_dropout", "seed", "batch_size", "grad_accum")


@dataclass
class TrainResult:
    out: Path
    report: dict
    report_path: Path
    loss_plot: Path
    export_command: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Inputs:
    """The run's data and base, checked before a model loads."""
    out: Path
    work: Path
    lengths: tuple[str, ...]
    dataset: Dataset
    eval_set: Dataset | None
    pairs: list
    dropped: dict
    base_path: Path
    model_type: str
    kind: str


@dataclass
class _Base:
    """The base model in memory, with what the runtime's shape of it needs."""
    torch: object
    device: str
    tokenizer: object
    model: object
    max_input: int
    shape: ModelShape
    templates: dict
    generation: GenerationDefaults  # the base's, as its export will write them
    source: dict  # source_info of the base
    run: dict  # run.json's settings, which a resumed run must match
    base_name: str  # --base as given

    def summarizer_for(self, current_model, name):
        return lambda length: HFSummarizer(current_model, self.tokenizer, self.shape, name=name,
                                           source=self.base_name, length=length, generation=self.generation)


@dataclass
class _Fit:
    """What the Trainer did, for the report."""
    trainer: object
    output: object
    lr: float
    total_steps: int
    logging_steps: int
    bf16: bool
    resume_from: str | None
    train_seconds: float
    trained_tokens: int
    trainable: int
    total_params: int


def train(config: TrainConfig, *, track: Callable[[str], Callable[[Iterable], Iterable]] | None = None
          ) -> TrainResult:
    """Fine-tune `config.base` with LoRA on `config.data`, score it before and after on
    `config.eval_data`, and save the merged checkpoint (and the adapter alone) to `config.out`.

    `track(description)` returns a wrapper that shows progress through the documents of an
    evaluation pass (the CLI renders it); None: none shown. transformers' own step bars follow
    `config.progress`.
    """
    started = time.perf_counter()
    inputs = _check_inputs(config)
    base = _load_base(config, inputs)
    progress = track or _untracked
    examples, features, counts = _prepare_examples(config, inputs, base, progress)
    notes = []
    before = _score_base(config, inputs, base, examples, notes, progress)
    fit = _fit(config, inputs, base, features, notes)
    model, adapter_dir = _save_model(config, inputs, base, fit.trainer)
    after = None
    if inputs.eval_set is not None:
        after = evaluate(base.summarizer_for(model, "fine-tuned"), inputs.eval_set, config.default_length,
                         seed=config.seed, progress=progress("eval after training"))
    points = loss_points(fit.trainer.state.log_history)
    loss_png = plot_loss(points, inputs.work / "loss.png",
                         f"sumctl train: {Path(config.base).name} ({'LoRA' if config.lora else 'full'}), "
                         f"{len(features)} examples")
    export = _export_command(inputs, base.max_input, model, notes)
    report = _report(config, inputs, base, fit, features, counts, points, before, after, adapter_dir,
                     export, notes, started)
    report_path = inputs.work / "report.json"
    atomic_write_text(report_path, strict_dumps(report, indent=2) + "\n")
    if before and after:
        atomic_write_text(inputs.work / "eval_summaries.json",
                          strict_dumps({"before": before["records"], "after": after["records"]}, indent=2) + "\n")
    return TrainResult(inputs.out, report, report_path, loss_png, export, notes)


def _check_inputs(config: TrainConfig) -> _Inputs:
    """Everything that can be wrong with the data fails here, before a model loads."""
    lengths = parse_lengths(config.lengths)
    out = Path(config.out).expanduser()
    work = out / "training"
    _check_out(out, work, config)
    dataset = load_records(config.data)
    eval_set = load_records(config.eval_data) if config.eval_data else None
    pairs, dropped = select(dataset, lengths, config.default_length)
    base_path = resolve_checkpoint(config.base, revision=config.revision)
    model_type = read_config(base_path).get("model_type")
    kind = FAMILIES.get(model_type)
    if kind is None:
        raise TrainError(f"{base_path}: model_type {model_type!r} cannot be trained here (supported: "
                         "t5 for FLAN-T5/T5, llama for TinyLlama, SmolLM2, LiteLlama, gemma3_text for Gemma 3)")
    return _Inputs(out, work, lengths, dataset, eval_set, pairs, dropped, base_path, model_type, kind)


def _load_base(config: TrainConfig, inputs: _Inputs) -> _Base:
    """The base model on its device, seeded; a resumed run's settings are checked against it."""
    # Evaluation runs llama.cpp in this process, and torch starts the one OpenMP runtime both use.
    prepare_llama_cpp()
    import torch
    import transformers
    from transformers import AutoTokenizer, set_seed

    transformers.logging.set_verbosity_error()
    kind, base_path = inputs.kind, inputs.base_path
    device = _device(config.device, torch)
    tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=False)
    model = _load_model(base_path, kind, torch)
    max_input = config.max_input_tokens or _default_max_input(kind, model.config)
    shape = ModelShape(kind, tokenizer, max_input)
    templates = default_templates()
    generation = generation_defaults(kind, base_path)
    source = source_info(config.base, base_path, config.revision)
    run = {"base": config.base, "base_path": str(base_path), "base_sha256": source["sha256"],
           "data": str(Path(config.data).resolve()), "data_sha256": inputs.dataset.sha256, "kind": kind,
           "model_type": inputs.model_type, "lora": config.lora, "lengths": list(inputs.lengths),
           "default_length": config.default_length, "max_input_tokens": max_input,
           "long_inputs": config.long_inputs, "drop_overlong": config.drop_overlong,
           "lora_r": config.lora_r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
           "seed": config.seed, "batch_size": config.batch_size, "grad_accum": config.grad_accum}
    _check_resume(inputs.work, run, config.resume)

    set_seed(config.seed)
    model.to(device)
    return _Base(torch, device, tokenizer, model, max_input, shape, templates, generation, source, run,
                 config.base)


def _prepare_examples(config: TrainConfig, inputs: _Inputs, base: _Base, progress) -> tuple[list, list, dict]:
    """The examples (a resumed run reads back the ones it trained on), encoded, and recorded
    with run.json in the work folder."""
    work = inputs.work
    max_new = dict(base.generation.max_new_tokens)
    examples_file = work / "examples.jsonl"
    if config.resume and examples_file.is_file():
        examples = load_examples(examples_file)
        counts = json.loads((work / "run.json").read_text())["data_counts"]
    else:
        base_summarizer = base.summarizer_for(base.model, "base")

        def reducer(record, length):
            return reduce_input(base_summarizer(length).summarize(record.transcript, length=length,
                                                                  query=record.query))

        prepared = build_examples(inputs.dataset, inputs.pairs, base.shape, base.templates, max_new,
                                  long_inputs=config.long_inputs, reducer=reducer,
                                  progress=progress("reduce inputs (base model)"))
        examples, counts = prepared.examples, {**prepared.counts, **inputs.dropped}
    features, n_overlong = encode_all(examples, base.shape, base.templates, max_new, Path(config.data),
                                      drop_overlong=config.drop_overlong)
    if n_overlong:
        counts["dropped_overlong"] = n_overlong
    check_enough(len(features), Path(config.data), counts)
    work.mkdir(parents=True, exist_ok=True)
    if not examples_file.is_file():
        save_examples(examples, examples_file)
    atomic_write_text(work / "run.json", strict_dumps({**base.run, "data_counts": counts}, indent=2) + "\n")
    return examples, features, counts


def _score_base(config: TrainConfig, inputs: _Inputs, base: _Base, examples: list, notes: list,
                progress) -> dict | None:
    """The base model's scores on --eval; a resumed run keeps the ones it has, unless --eval changed."""
    eval_set = inputs.eval_set
    if eval_set is None:
        return None
    before = None
    before_file = inputs.work / "eval_before.json"
    overlap = set(eval_set.ids()) & {e.id for e in examples}
    if overlap:
        notes.append(f"{len(overlap)} --eval id(s) also appear in --data (e.g. {sorted(overlap)[0]!r}); "
                     "their scores are not held-out")
    if before_file.is_file():
        before = json.loads(before_file.read_text())
        if before.get("data_sha256") != eval_set.sha256:
            before = None
    if before is None:
        before = evaluate(base.summarizer_for(base.model, "base"), eval_set, config.default_length,
                          seed=config.seed, progress=progress("eval before training"))
        before["data_sha256"] = eval_set.sha256
        atomic_write_text(before_file, strict_dumps(before, indent=2) + "\n")
    return before


def _fit(config: TrainConfig, inputs: _Inputs, base: _Base, features: list, notes: list) -> _Fit:
    """Train, from the last checkpoint with --resume."""
    from transformers import set_seed

    set_seed(config.seed)
    model = base.model
    if config.lora:
        model = _wrap_lora(model, inputs.kind, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    lr = config.lr or (2e-4 if config.lora else 5e-5)
    steps_per_epoch = max(1, ceil(ceil(len(features) / config.batch_size) / config.grad_accum))
    total_steps = config.max_steps or max(1, ceil(config.epochs * steps_per_epoch))
    logging_steps = config.logging_steps or max(1, total_steps // 50)
    bf16 = _use_bf16(config.precision, base.device, base.torch)
    checkpoints = inputs.work / "checkpoints"
    trainer = _trainer(model, base.tokenizer, features, inputs.kind, config, checkpoints, lr=lr,
                       logging_steps=logging_steps, bf16=bf16, device=base.device)
    resume_from = _last_checkpoint(checkpoints) if config.resume else None
    if config.resume and resume_from is None:
        notes.append("--resume: no checkpoint was saved yet, so training started from the base")
    train_started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - train_started
    # Real (unpadded) tokens through the model; a resumed run counts only the steps it ran.
    epochs_run = (trainer.state.epoch or 0.0) - _resumed_epoch(resume_from)
    trained_tokens = round(sum(len(f["input_ids"]) for f in features) * max(0.0, epochs_run))
    return _Fit(trainer, output, lr, total_steps, logging_steps, bf16, resume_from, train_seconds,
                trained_tokens, trainable, total_params)


def _save_model(config: TrainConfig, inputs: _Inputs, base: _Base, trainer):
    """The adapter alone (LoRA), then the merged fp32 checkpoint: (the merged model, the adapter's folder)."""
    model = trainer.model
    adapter_dir = None
    if config.lora:
        adapter_dir = _save_adapter(model, inputs.out)
        model = model.merge_and_unload()
    model = model.to(base.torch.float32)
    _save_checkpoint(model, inputs.base_path, inputs.out)
    return model, adapter_dir


def _export_command(inputs: _Inputs, max_input: int, model, notes: list) -> str:
    kind = inputs.kind
    export = f"sumctl export {'t5' if kind == SEQ2SEQ else 'llama'} --model {inputs.out} --out BUNDLE_DIR"
    if inputs.model_type == "gemma3_text":
        # The GGUF exporter writes llama only; a Gemma 3 adapter runs on the base's own GGUF.
        notes.append("sumctl export llama does not take Gemma 3: export the adapter with "
                     f"export_lora_gguf('{inputs.out / 'adapter'}', '{inputs.base_path}', 'adapter.gguf') "
                     "and apply it to the base GGUF")
    if kind == SEQ2SEQ:
        export += f" --max-input-tokens {max_input}"
    elif max_input != _default_max_input(kind, model.config):
        notes.append(f"trained with a {max_input}-token context; run the GGUF bundle with "
                     f"SUMCTL_GGUF_N_CTX={max_input} so that it chapterizes the same way")
    return export


def _report(config: TrainConfig, inputs: _Inputs, base: _Base, fit: _Fit, features: list, counts: dict,
            points: list, before: dict | None, after: dict | None, adapter_dir: Path | None, export: str,
            notes: list, started: float) -> dict:
    trainer, dataset = fit.trainer, inputs.dataset
    return {
        "base": config.base, "base_path": str(inputs.base_path), "base_sha256": base.source["sha256"],
        "out": str(inputs.out), "kind": inputs.kind, "model_type": inputs.model_type,
        "mode": "lora" if config.lora else "full", "device": base.device, "bf16": fit.bf16,
        "adapter": str(adapter_dir) if adapter_dir else None,
        "data": {"path": str(config.data), "sha256": dataset.sha256, "records": len(dataset.records),
                 "examples": len(features), **counts},
        "eval_data": str(config.eval_data) if config.eval_data else None,
        "settings": {**{k: v for k, v in asdict(config).items()
                        if k not in ("base", "data", "out", "eval_data", "progress")},
                     "lengths": list(inputs.lengths), "lr": fit.lr, "max_input_tokens": base.max_input,
                     "logging_steps": fit.logging_steps, "total_steps": fit.total_steps},
        "params": {"total": fit.total_params, "trainable": fit.trainable},
        "steps": trainer.state.global_step, "epochs_done": round(trainer.state.epoch or 0.0, 4),
        "resumed_from": str(fit.resume_from) if fit.resume_from else None,
        "train_seconds": round(fit.train_seconds, 2), "wall_seconds": round(time.perf_counter() - started, 2),
        "train_tokens": fit.trained_tokens,
        "tokens_per_second": round(fit.trained_tokens / fit.train_seconds, 1) if fit.train_seconds > 0 else None,
        "train_loss": fit.output.training_loss,
        "loss_first": points[0][1] if points else None, "loss_last": points[-1][1] if points else None,
        "loss_curve": [{"step": s, "loss": v} for s, v in points],
        "eval_before": _strip(before), "eval_after": _strip(after),
        "eval_gain": compare(before, after, seed=config.seed) if before and after else None,
        "export_command": export, "notes": notes,
        "versions": package_versions("torch", "transformers", "peft", "accelerate"),
    }


def _strip(result: dict | None) -> dict | None:
    return None if result is None else {k: v for k, v in result.items() if k != "records"}


def _check_out(out: Path, work: Path, config: TrainConfig) -> None:
    if Path(config.base).expanduser().resolve() == out.resolve():
        raise TrainError(f"{out}: --out is the base checkpoint; choose a new folder")
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: exists and is not a folder; choose a new --out")
    if config.resume:
        if not (work / "run.json").is_file():
            raise TrainError(f"{out}: nothing to resume (no {work.name}/run.json); drop --resume "
                             "to start a new run")
    elif out.exists() and any(out.iterdir()):
        hint = (" (it holds a training run: pass --resume to continue it)" if (work / "run.json").is_file()
                else "")
        raise TrainError(f"{out}: already exists and is not empty{hint}; choose a new --out")


def _check_resume(work: Path, run: dict, resume: bool) -> None:
    if not resume:
        return
    old = json.loads((work / "run.json").read_text())
    for key in RESUME_KEYS:
        if old.get(key) != run.get(key):
            raise TrainError(f"{work.parent}: this run was started with {key}={old.get(key)!r}, not "
                             f"{run.get(key)!r}; resume with the same settings, or choose a new --out")


def _use_bf16(precision: str, device: str, torch) -> bool:
    if precision != "auto":
        return precision == "bf16"  # asked for: emulated bf16 is slow, not wrong
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    from sumctl.runtime.machine import cpu_has_bf16

    return cpu_has_bf16()


def _resumed_epoch(checkpoint: str | None) -> float:
    if checkpoint is None:
        return 0.0
    try:
        return float(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["epoch"] or 0.0)
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _save_adapter(peft_model, out: Path) -> Path:
    """The unmerged LoRA adapter (peft's safetensors and adapter_config.json), for a GGUF adapter."""
    adapter = out / "adapter"
    staging = out / ".adapter-staging"
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(staging, safe_serialization=True)
    # peft saves into a subfolder named for the adapter only when it is not "default".
    shutil.rmtree(adapter, ignore_errors=True)
    os.replace(staging, adapter)
    return adapter


def _device(requested: str, torch) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA GPU is visible to torch (use --device cpu, or install "
                         "a CUDA build of torch)")
    return requested


def _load_model(path: Path, kind: str, torch):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cls = AutoModelForSeq2SeqLM if kind == SEQ2SEQ else AutoModelForCausalLM
    try:
        return cls.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                   torch_dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: cannot load the checkpoint ({first_line(e, 200)})") from None


def _default_max_input(kind: str, model_config) -> int:
    if kind == SEQ2SEQ:
        return DEFAULT_T5_INPUT_TOKENS
    from sumctl.runtime.bundle.configs import N_CTX_CAP

    # The GGUF runtime's context: the model's training context, capped (a sliding window, as
    # the GGUF exporter records it, counts as the context).
    n_ctx = int(getattr(model_config, "max_position_embeddings", None) or N_CTX_CAP)
    window = getattr(model_config, "sliding_window", None)
    # Gemma 3 slides the window on most layers but attends to everything on every sixth, and
    # llama.cpp runs it so: its context is the whole training context.
    if window and "full_attention" not in (getattr(model_config, "layer_types", None) or ()):
        n_ctx = min(n_ctx, int(window))
    return min(n_ctx, N_CTX_CAP)


def _wrap_lora(model, kind: str, config: TrainConfig):
    from peft import LoraConfig, TaskType, get_peft_model

    task = TaskType.SEQ_2_SEQ_LM if kind == SEQ2SEQ else TaskType.CAUSAL_LM
    # Every linear layer except the output head: what QLoRA found to match full fine-tuning.
    lora = LoraConfig(task_type=task, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules="all-linear")
    return get_peft_model(model, lora)


def _trainer(model, tokenizer, features, kind, config: TrainConfig, checkpoints: Path, *, lr: float,
             logging_steps: int, bf16: bool, device: str):
    import copy

    from transformers import (DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer,
                              TrainingArguments)

    args_cls, trainer_cls = ((Seq2SeqTrainingArguments, Seq2SeqTrainer) if kind == SEQ2SEQ
                             else (TrainingArguments, Trainer))
    args = args_cls(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=lr, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
        lr_scheduler_type="linear", logging_steps=logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=2, save_safetensors=True,
        seed=config.seed, data_seed=config.seed, use_cpu=device == "cpu", bf16=bf16,
        report_to="none", disable_tqdm=not config.progress, dataloader_num_workers=0,
        remove_unused_columns=False, eval_strategy="no", optim="adamw_torch",
        group_by_length=config.group_by_length,
    )
    collate_tokenizer = tokenizer
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id will do; the
        # tokenizer the checkpoint ships stays exactly the base's.
        collate_tokenizer = copy.deepcopy(tokenizer)
        collate_tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    collator = DataCollatorForSeq2Seq(collate_tokenizer, padding=True, label_pad_token_id=-100)
    import warnings

    # Checkpoint rotation falls back to step numbers where mtimes are coarse; that is fine.
    warnings.filterwarnings("ignore", message="mtime may not be reliable")
    if kind != SEQ2SEQ:
        trainer_cls = reply_loss_trainer(trainer_cls)
    trainer = trainer_cls(model=model, args=args, train_dataset=features, data_collator=collator)
    if not config.progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # it prints every log line when bars are off
    return trainer


def reply_loss_trainer(trainer_cls):
    """A causal-LM Trainer whose loss projects only the reply's positions onto the vocabulary.

    The loss is on the summary alone, a tenth of the tokens or less, but the model's own forward
    computes logits over the whole vocabulary (49k words for SmolLM2, 262k for Gemma 3) at every
    prompt position too, and that head and its softmax were about a third of each step on CPU
    for SmolLM2, and half for Gemma 3 (fp32, one thread, QMSum segments: 45 tokens/s with the
    full logits, 92 without). Same loss, same gradients."""

    class ReplyLossTrainer(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = reply_loss(model, inputs, num_items_in_batch)
            return (loss, {"loss": loss}) if return_outputs else loss

    return ReplyLossTrainer


def reply_loss(model, inputs: dict, num_items_in_batch=None):
    """The causal LM's summed cross-entropy over the labelled positions, divided by the label
    count the Trainer passes (across accumulated batches, as its own loss does) or by this batch's."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(input_ids=inputs["input_ids"],
                                  attention_mask=inputs["attention_mask"]).last_hidden_state
    targets = inputs["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()
    cap = getattr(causal.config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 caps its logits; its own forward does the same
        logits = torch.tanh(logits / cap) * cap
    loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1))


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint. The Trainer writes trainer_state.json after the weights,
    optimizer, scheduler and RNG states, so a run killed while saving leaves a folder without a
    readable one, and resuming from it would fail; the one before it is used instead."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        try:
            step = int(path.name.rsplit("-", 1)[1])
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        if state.get("global_step") == step:
            found.append((step, path))
    return str(max(found)[1]) if found else None


def _save_checkpoint(model, base_path: Path, out: Path) -> None:
    """Write the merged model and the base's own tokenizer files; config.json goes in last,
    since a folder with it is what `sumctl export` takes for a finished checkpoint."""
    staging = out / ".checkpoint-staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base_path / name).is_file():
            shutil.copy2(base_path / name, staging / name)
    (out / "config.json").unlink(missing_ok=True)
    names = sorted(p.name for p in staging.iterdir())
    for name in [n for n in names if n != "config.json"] + ["config.json"]:
        os.replace(staging / name, out / name)
    staging.rmdir()


def _untracked(description: str):
    return lambda items: items


def summary_lines(result: TrainResult) -> list[str]:
    r = result.report
    lines = [f"Fine-tuned checkpoint written to {result.out}",
             f"  {r['steps']} steps ({r['mode']}, {r['device']}), loss {r['loss_first']:.4f} -> "
             f"{r['loss_last']:.4f}, {r['train_seconds']:.0f} s" if r["loss_first"] is not None
             else f"  {r['steps']} steps ({r['mode']}, {r['device']})"]
    if r["eval_before"]:
        lines += [f"  eval before: {format_scores(r['eval_before'])}",
                  f"  eval after:  {format_scores(r['eval_after'])}"]
    lines += [f"  report: {result.report_path}", f"  loss curve: {result.loss_plot}",
              f"Next: {result.export_command}"]
    lines += [f"Note: {n}" for n in result.notes]
    return lines
