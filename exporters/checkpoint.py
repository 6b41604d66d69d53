"""Finding and vetting a source checkpoint: a local Hugging Face folder or a hub id.

Weights load from safetensors only. A pickle checkpoint (`pytorch_model.bin`, `*.pt`) can run
arbitrary code when loaded, so it is refused unless the user passes --allow-pickle. Remote code
is never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sumctl.runtime.errors import first_line
from sumctl.runtime.fsutil import hash_stream

from sumctl.exporters.errors import ExportError

SAFE_WEIGHTS = ("*.safetensors",)
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]


def resolve_checkpoint(model: str, *, revision: str | None = None, allow_pickle: bool = False) -> Path:
    """A local folder, or a hub id downloaded (safetensors and configs only) to the HF cache."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"{path}: expected a checkpoint folder (with config.json), got a file")
    else:
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise ExportError(f"{model}: no such checkpoint folder")
        try:
            from huggingface_hub import snapshot_download

            patterns = HUB_PATTERNS + (list(PICKLE_WEIGHTS) if allow_pickle else [])
            path = Path(snapshot_download(model, revision=revision, allow_patterns=patterns))
        except Exception as e:  # offline, unknown repo, auth: all end the export the same way
            raise ExportError(f"{model}: not a local folder, and the hub download failed "
                              f"({type(e).__name__}: {first_line(e, 160)})") from None
    if not (path / "config.json").is_file():
        raise ExportError(f"{path}: no config.json (is this a Hugging Face checkpoint folder?)")
    check_weights(path, allow_pickle=allow_pickle)
    return path


def check_weights(path: Path, *, allow_pickle: bool) -> None:
    safe = [p for pat in SAFE_WEIGHTS for p in path.glob(pat)]
    pickled = [p for pat in PICKLE_WEIGHTS for p in path.glob(pat)]
    if safe:
        return
    if pickled and not allow_pickle:
        raise ExportError(f"{pickled[0]}: pickle weights can run arbitrary code when loaded; "
                          "convert the checkpoint to safetensors, or pass --allow-pickle if you trust it")
    if not pickled:
        raise ExportError(f"{path}: no model weights (*.safetensors) found")


def read_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path / 'config.json'}: unreadable ({e})") from None


def require_architecture(path: Path, allowed_model_types: tuple[str, ...], what: str) -> dict:
    config = read_config(path)
    model_type = config.get("model_type")
    if model_type not in allowed_model_types:
        archs = ", ".join(config.get("architectures") or []) or "unknown"
        raise ExportError(f"{path}: model_type {model_type!r} ({archs}) is not supported by "
                          f"`sumctl export {what}` (supported: {', '.join(allowed_model_types)})")
    return config


def source_info(model: str, path: Path, revision: str | None) -> dict:
    """What the manifest records about the source: id or path, revision, and a weights hash."""
    digest = hashlib.sha256()
    for weights in sorted(p for pat in SAFE_WEIGHTS + PICKLE_WEIGHTS for p in path.glob(pat)):
        digest.update(weights.name.encode())
        with open(weights, "rb") as f:
            hash_stream(f, digest)
    return {"model": model, "path": str(path.resolve()), "revision": revision or _snapshot_revision(path),
            "sha256": digest.hexdigest()}


def _snapshot_revision(path: Path) -> str | None:
    # Hub snapshots live in .../snapshots/<commit sha>/
    parent = path.resolve().parent
    return path.resolve().name if parent.name == "snapshots" else None
