"""How `--model` is resolved.

`--model` takes a bundle folder, or the name of a bundle in the user's model store
(`sumctl models path`). With no `--model`, SUMCTL_MODEL is used, then the embedded default.
"""

from __future__ import annotations

import os
from pathlib import Path

from sumctl.runtime.bundle import Bundle, load_bundle
from sumctl.runtime.default_model import default_bundle
from sumctl.runtime.errors import BundleError
from sumctl.runtime.store import models_dir

MODEL_ENV = "SUMCTL_MODEL"


def resolve_model(spec: str | os.PathLike | None, *, verify: bool = True) -> Bundle:
    spec = spec or os.environ.get(MODEL_ENV) or None
    if spec is None:
        return default_bundle(verify=verify)
    path = Path(spec).expanduser()
    if path.exists() or os.sep in str(spec) or str(spec).startswith("."):
        return load_bundle(path, verify=verify)
    named = models_dir() / str(spec)
    if named.exists():
        return load_bundle(named, verify=verify)
    raise BundleError(f"{spec}: no bundle folder or installed model of that name "
                      "(see `sumctl models list`, or export one with `sumctl export`)")
