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
    """Write `source` as module `module`, install it as a plug-in the way a package does (an
    entry point `name = module:cls` in the sumctl.backends group, in a .dist-info beside it),
    and make an extractive-style bundle that names it. Returns (bundle folder, the class); the
    module and its entry point are forgotten when the test ends (monkeypatch)."""
    from sumctl.runtime.backends import ENTRY_POINT_GROUP
    from sumctl.runtime.bundle import write_manifest
    from sumctl.runtime.backends.extractive import build_extractive_bundle

    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.delitem(sys.modules, module, raising=False)
    dist_info = plugins / f"{module}-0.1.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}:{cls}\n")
    bundle = build_extractive_bundle(tmp_path / f"bundle-{name}")
    write_manifest(bundle.path, replace(bundle.manifest, backend=name, **manifest_changes))
    imported = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, module, imported)
    return bundle.path, getattr(imported, cls)
