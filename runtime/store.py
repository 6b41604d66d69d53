"""The user's model store: where bundles sumctl builds itself (the embedded default) and named
bundles live. `SUMCTL_HOME` moves it; otherwise it is the platform's user data folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from sumctl.runtime.bundle import MANIFEST_NAME, Bundle, load_bundle
from sumctl.runtime.errors import BundleError

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
