"""`sumctl train`: LoRA fine-tuning of a compact model on your own transcripts, in the runtime's
own input shape (data.py), scored before and after by the runtime's Summarizer over the model in
memory (hf_backend.py, report.py); collect.py gathers references from a cloud model."""

from importlib import import_module

# Loaded on first use, not here: the CLI imports config.py's choices when it starts, and run.py
# brings numpy and the evaluation stack with it. (collect() is imported from collect.py itself:
# under the package, its name would be the submodule's once that is loaded.)
_HOMES = {"TrainConfig": "config", "TrainResult": "run", "reply_loss_trainer": "run",
          "summary_lines": "run", "train": "run"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
