"""`sumctl train`'s settings, checked when they are made.

A bad value is refused in one line that names the option and what it takes, before any data is
read or any model loads: `precision="fp8"` used to pass until the Trainer was being built.

The choice tuples here are the ones the CLI offers. This module imports nothing heavier than the
runtime's prompts, so that it stays cheap to import wherever the choices are needed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from sumctl.exporters.errors import TrainError
from sumctl.runtime.prompts import DEFAULT_LENGTH, LENGTHS

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
LONG_INPUT_POLICIES = ("reduce", "skip")
MIN_INPUT_TOKENS = 16  # as `sumctl export t5` takes it
MAX_SEED = 2**32 - 1  # transformers' set_seed seeds numpy too, which takes no larger seed

# Where the option a user types is not the field's own name.
_FLAGS = {"eval_data": "--eval", "lora": "--lora/--full", "progress": "progress"}


def parse_lengths(value: str | list | tuple) -> tuple[str, ...]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        items = list(value)
    else:
        items = None
    lengths = tuple(dict.fromkeys(s.strip() for s in items if s.strip())) if items is not None else ()
    bad = [s for s in lengths if s not in LENGTHS]
    if bad or not lengths:
        shown = value if isinstance(value, str) else ",".join(map(str, items or [value]))
        raise TrainError(f"--lengths {shown!r}: use a comma-separated list of {', '.join(LENGTHS)}")
    return lengths


@dataclass
class TrainConfig:
    base: str
    data: Path
    out: Path
    eval_data: Path | None = None
    lora: bool = True
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs
    lr: float | None = None  # default: 2e-4 with LoRA, 5e-5 full
    batch_size: int = 4
    grad_accum: int = 1
    # T5: the encoder input (default 512, as `sumctl export t5`); causal LMs: the context shared by
    # prompt and summary (default: the model's, capped like the GGUF runtime caps it).
    max_input_tokens: int | None = None
    lengths: tuple[str, ...] = LENGTHS
    default_length: str = DEFAULT_LENGTH
    device: str = "auto"  # one of DEVICES
    # auto: bf16 autocast where the hardware runs bf16 natively (AVX-512 BF16 or AMX CPUs, CUDA
    # GPUs that support it), fp32 elsewhere, where emulated bf16 is slower than fp32.
    precision: str = "auto"  # one of PRECISIONS
    # Batches of similar lengths (transformers' length-grouped sampler): padding, which costs
    # as much compute as real tokens, drops from about half the batch to a few percent.
    group_by_length: bool = True
    seed: int = 0
    resume: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    save_steps: int = 100
    logging_steps: int | None = None  # default: about 50 points on the loss curve
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    long_inputs: str = "reduce"  # one of LONG_INPUT_POLICIES
    drop_overlong: bool = False
    revision: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            _RULES[f.name](f.name, getattr(self, f.name))


def _refuse(name: str, value, takes: str) -> TrainError:
    return TrainError(f"{_FLAGS.get(name, '--' + name.replace('_', '-'))} {value!r}: use {takes}")


def _choice(allowed: tuple[str, ...]):
    def check(name, value):
        if not isinstance(value, str) or value not in allowed:
            raise _refuse(name, value, f"one of {', '.join(allowed)}")
    return check


def _whole(least: int, most: int | None = None, *, optional: bool = False):
    def check(name, value):
        if value is None and optional:
            return
        # bool is an int to Python, but True steps is a mistake, not a number.
        if (not isinstance(value, int) or isinstance(value, bool) or value < least
                or (most is not None and value > most)):
            span = f"from {least} to {most}" if most is not None else f"of {least} or more"
            raise _refuse(name, value, f"a whole number {span}" + (", or leave it unset" if optional else ""))
    return check


def _real(*, above: float | None = None, least: float | None = None, below: float | None = None,
          most: float | None = None, optional: bool = False):
    bounds = [f"{word} {limit:g}" for word, limit in (("above", above), ("at least", least),
                                                      ("below", below), ("at most", most)) if limit is not None]
    takes = "a number " + " and ".join(bounds) + (", or leave it unset" if optional else "")

    def check(name, value):
        if value is None and optional:
            return
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (above is None or value > above) and (least is None or value >= least)
              and (below is None or value < below) and (most is None or value <= most))
        if not ok:
            raise _refuse(name, value, takes)
    return check


def _flag(name, value):
    if not isinstance(value, bool):
        raise _refuse(name, value, "True or False")


def _path(*, optional: bool = False):
    def check(name, value):
        if value is None and optional:
            return
        if not ((isinstance(value, str) and value.strip()) or isinstance(value, os.PathLike)):
            raise _refuse(name, value, "a path" + (", or leave it unset" if optional else ""))
    return check


def _text(*, optional: bool = False, takes: str = "non-empty text"):
    def check(name, value):
        if value is None and optional:
            return
        if not isinstance(value, str) or not value.strip():
            raise _refuse(name, value, takes + (", or leave it unset" if optional else ""))
    return check


def _lengths(name, value):
    parse_lengths(value)  # its own message says what --lengths takes


# One rule a field; a field without one is a KeyError the first time a TrainConfig is made.
_RULES = {
    # The base is recorded in run.json and the report as given, so it must be text.
    "base": _text(takes="a checkpoint folder or hub id, as text"),
    "data": _path(),
    "out": _path(),
    "eval_data": _path(optional=True),
    "lora": _flag,
    "epochs": _real(above=0),
    "max_steps": _whole(1, optional=True),
    # train() reads a missing lr as its default; 0 is refused rather than quietly read the same way.
    "lr": _real(above=0, optional=True),
    "batch_size": _whole(1),
    "grad_accum": _whole(1),
    "max_input_tokens": _whole(MIN_INPUT_TOKENS, optional=True),
    "lengths": _lengths,
    "default_length": _choice(LENGTHS),
    "device": _choice(DEVICES),
    "precision": _choice(PRECISIONS),
    "group_by_length": _flag,
    "seed": _whole(0, MAX_SEED),
    "resume": _flag,
    "lora_r": _whole(1),
    "lora_alpha": _whole(1),
    "lora_dropout": _real(least=0, below=1),
    "save_steps": _whole(1),
    "logging_steps": _whole(1, optional=True),
    "warmup_ratio": _real(least=0, most=1),
    "weight_decay": _real(least=0),
    "long_inputs": _choice(LONG_INPUT_POLICIES),
    "drop_overlong": _flag,
    "revision": _text(optional=True),
    "progress": _flag,
}
