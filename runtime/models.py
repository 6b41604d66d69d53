"""Where bundles live and how `--model` is resolved.

`--model` takes a bundle folder, or the name of a bundle in the user's model store
(`sumctl models path`). With no `--model`, SUMCTL_MODEL is used, then the embedded default.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .bundle import MANIFEST_NAME, Bundle, load_bundle
from .errors import BundleError

MODEL_ENV = "SUMCTL_MODEL"
HOME_ENV = "SUMCTL_HOME"


def data_dir() -> Path:
    """The store for bundles sumctl builds itself (the embedded default) and named bundles."""
    root = os.environ.get(HOME_ENV)
    return Path(root) if root else Path(platformdirs.user_data_dir("sumctl", appauthor=False))


def models_dir() -> Path:
    return data_dir() / "models"


def installed_models() -> list[Bundle]:
    root = models_dir()
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if (child / MANIFEST_NAME).is_file():
            try:
                found.append(load_bundle(child, verify=False))
            except BundleError:
                continue
    return found


def resolve_model(spec: str | os.PathLike | None, *, verify: bool = True) -> Bundle:
    spec = spec or os.environ.get(MODEL_ENV) or None
    if spec is None:
        from .default_model import default_bundle

        return default_bundle(verify=verify)
    path = Path(spec).expanduser()
    if path.exists() or os.sep in str(spec) or str(spec).startswith("."):
        return load_bundle(path, verify=verify)
    named = models_dir() / str(spec)
    if named.exists():
        return load_bundle(named, verify=verify)
    raise BundleError(f"{spec}: no bundle folder or installed model of that name "
                      "(see `sumctl models list`, or export one with `sumctl export`)")
