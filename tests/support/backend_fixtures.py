"""Plug-in backends for tests, registered through the real backend registry and built on the
extractive baseline's bundle: a model whose misbehaviour a test chooses."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

__all__ = ["plugin_backend"]


def plugin_backend(tmp_path: Path, monkeypatch, source: str, module: str, cls: str, *,
                   name: str, **manifest_changes):
    """Write `source` as module `module`, register `module:cls` as backend `name`, and make an
    extractive-style bundle that names it. Returns (bundle folder, the class); the module is
    forgotten when the test ends (monkeypatch)."""
    from sumctl.runtime import backend as backends
    from sumctl.runtime.bundle import write_manifest
    from sumctl.runtime.extractive import build_extractive_bundle

    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(backends.BUILTIN_BACKENDS, name, f"{module}:{cls}")
    bundle = build_extractive_bundle(tmp_path / f"bundle-{name}")
    write_manifest(bundle.path, replace(bundle.manifest, backend=name, **manifest_changes))
    imported = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, module, imported)
    return bundle.path, getattr(imported, cls)
