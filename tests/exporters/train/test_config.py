"""`TrainConfig` refuses a bad setting when it is made, in one line naming the option and what it
takes, instead of deep inside a run (no data read, no model loaded, nothing written)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sumctl.exporters.errors import TrainError
from sumctl.exporters.train import TrainConfig
from sumctl.exporters.train.config import DEVICES, LONG_INPUT_POLICIES, PRECISIONS
from sumctl.runtime.errors import SumctlError
from sumctl.runtime.prompts import LENGTHS

NAN, INF = math.nan, math.inf


def _make(tmp_path: Path, **kw) -> TrainConfig:
    settings = dict(base="google/flan-t5-small", data=tmp_path / "train.jsonl", out=tmp_path / "out")
    settings.update(kw)
    return TrainConfig(**settings)


@pytest.mark.parametrize("field, value, takes", [
    ("precision", "fp8", "one of auto, bf16, fp32"),
    ("precision", "BF16", "one of auto, bf16, fp32"),
    ("device", "gpu", "one of auto, cpu, cuda"),
    ("long_inputs", "truncate", "one of reduce, skip"),
    ("default_length", "tiny", "one of " + ", ".join(LENGTHS)),
    ("lengths", "long,tiny", "comma-separated list of " + ", ".join(LENGTHS)),
    ("lengths", (), "comma-separated list"),
    ("lengths", 5, "comma-separated list"),
    ("epochs", 0, "a number above 0"),
    ("epochs", -1.0, "a number above 0"),
    ("epochs", NAN, "a number above 0"),
    ("epochs", INF, "a number above 0"),
    ("epochs", "3", "a number above 0"),
    ("max_steps", 0, "whole number of 1 or more"),
    ("max_steps", 2.5, "whole number of 1 or more"),
    ("max_steps", True, "whole number of 1 or more"),
    ("lr", 0, "a number above 0"),
    ("lr", -1e-4, "a number above 0"),
    ("lr", NAN, "a number above 0"),
    ("lr", INF, "a number above 0"),
    ("batch_size", 0, "whole number of 1 or more"),
    ("batch_size", 4.0, "whole number of 1 or more"),
    ("grad_accum", 0, "whole number of 1 or more"),
    ("max_input_tokens", 8, "whole number of 16 or more"),
    ("save_steps", 0, "whole number of 1 or more"),
    ("logging_steps", 0, "whole number of 1 or more"),
    ("lora_r", 0, "whole number of 1 or more"),
    ("lora_alpha", 0, "whole number of 1 or more"),
    ("lora_dropout", 1.0, "a number at least 0 and below 1"),
    ("lora_dropout", -0.1, "a number at least 0 and below 1"),
    ("warmup_ratio", 1.5, "a number at least 0 and at most 1"),
    ("warmup_ratio", -0.1, "a number at least 0 and at most 1"),
    ("weight_decay", -0.01, "a number at least 0"),
    ("weight_decay", NAN, "a number at least 0"),
    ("seed", -1, f"from 0 to {2**32 - 1}"),
    ("seed", 2**32, f"from 0 to {2**32 - 1}"),
    ("seed", "0", f"from 0 to {2**32 - 1}"),
    ("lora", "yes", "True or False"),
    ("resume", 1, "True or False"),
    ("group_by_length", None, "True or False"),
    ("drop_overlong", "no", "True or False"),
    ("progress", 0, "True or False"),
    ("base", "", "checkpoint folder or hub id"),
    ("base", Path("ckpt"), "checkpoint folder or hub id"),  # run.json records it as JSON text
    ("base", None, "checkpoint folder or hub id"),
    ("data", None, "a path"),
    ("out", "", "a path"),
    ("eval_data", 3, "a path"),
    ("revision", "", "non-empty text"),
])
def test_a_bad_setting_is_refused_when_the_config_is_made(field, value, takes, tmp_path):
    flag = {"eval_data": "--eval", "lora": "--lora/--full", "progress": "progress"}.get(
        field, "--" + field.replace("_", "-"))
    with pytest.raises(TrainError) as caught:
        _make(tmp_path, **{field: value})
    message = str(caught.value)
    assert isinstance(caught.value, SumctlError)  # so the CLI prints it as one line
    assert "\n" not in message
    assert message.startswith(f"{flag} "), message
    assert takes in message, message
    assert not list(tmp_path.iterdir()), "a refused config wrote something"


@pytest.mark.parametrize("kw", [
    {},
    {"epochs": 1, "lr": 1, "max_steps": 1, "logging_steps": 1, "max_input_tokens": 16},
    {"data": "train.jsonl", "out": "out", "eval_data": "val.jsonl", "revision": "main"},
    {"lengths": "short, medium", "default_length": "short"},
    {"lengths": ["long"], "lora": False, "resume": True, "progress": False, "drop_overlong": True},
    {"lora_dropout": 0, "warmup_ratio": 1, "weight_decay": 0, "seed": 2**32 - 1},
    {"precision": "bf16", "device": "cpu", "long_inputs": "skip", "group_by_length": False},
])
def test_good_settings_are_kept_as_given(kw, tmp_path):
    config = _make(tmp_path, **kw)
    for name, value in kw.items():
        assert getattr(config, name) == value


def test_the_cli_offers_the_choices_the_config_takes():
    from sumctl.cli.main import cli

    command = cli.commands["train"]
    choices = {p.name: tuple(p.type.choices) for p in command.params if hasattr(p.type, "choices")}
    assert choices["precision"] == PRECISIONS
    assert choices["device"] == DEVICES
    assert choices["long_inputs"] == LONG_INPUT_POLICIES
    assert choices["default_length"] == tuple(LENGTHS)


def test_the_choices_import_without_numpy():
    """The CLI builds its click.Choice options from them when it starts, which must stay light."""
    import subprocess
    import sys

    code = ("import sys\nfrom sumctl.exporters.train.config import PRECISIONS, TrainConfig\n"
            "print(sorted(m for m in ('numpy', 'torch', 'sumctl.exporters.train.run') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
