"""Model bundles: a folder of model files described by a `sumctl.json` manifest.

The runtime loads a bundle only through its manifest, and refuses one whose files do not match
their recorded sha256, naming the file. A manifest records where the model came from, how it was
quantized, the prompts it expects, its generation defaults and how its export was verified.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from sumctl.runtime.bundle.generation import GenerationDefaults
from sumctl.runtime.errors import BundleError
from sumctl.runtime.fsutil import atomic_write_text, sha256_file
from sumctl.runtime.prompts import LENGTHS, default_templates
from sumctl.runtime.jsonout import strict_dumps

MANIFEST_NAME = "sumctl.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    backend: str
    source: dict  # {"model": id or path, "revision": ..., "sha256": ...}
    quantization: str
    max_input_tokens: int
    prompts: dict[str, str] = field(default_factory=default_templates)
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    verification: dict = field(default_factory=dict)
    backend_config: dict = field(default_factory=dict)  # what only the backend reads
    name: str = ""
    label: str = ""  # shown next to every summary, e.g. "smoke-test model: random weights"
    created_at: str = ""
    versions: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # A manifest built in memory (training, benchmarks) may give the JSON form.
        if not isinstance(self.generation, GenerationDefaults):
            self.generation = GenerationDefaults.from_dict(
                self.generation, f"the manifest of {self.name or self.backend}")

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["generation"] = self.generation.to_dict()
        return copy.deepcopy(data)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "Manifest":
        if not isinstance(data, dict):
            raise BundleError(f"{where}: the manifest must be a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{where}: manifest format_version {version!r} is not supported "
                              f"(this sumctl reads version {FORMAT_VERSION}; re-export the model)")
        known = set(cls.__dataclass_fields__) - {"generation"}
        missing = [k for k in ("backend", "source", "quantization", "max_input_tokens", "files")
                   if k not in data]
        if missing:
            raise BundleError(f"{where}: manifest lacks {', '.join(missing)} (re-export the model)")
        check_manifest_shape(data, where)
        generation = GenerationDefaults.from_dict(data.get("generation", {}), where)
        manifest = cls(**{k: v for k, v in data.items() if k in known}, generation=generation)
        absent = [length for length in LENGTHS if length not in manifest.prompts]
        if absent:
            raise BundleError(f"{where}: manifest has no prompt for length {', '.join(absent)}")
        return manifest


# The shape every reader of a manifest relies on; anything else about it is the backend's.
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["format_version", "backend", "source", "quantization", "max_input_tokens",
                 "files"],
    "properties": {
        "format_version": {"type": "integer"},
        "backend": {"type": "string", "minLength": 1},
        "source": {"type": "object"},
        "quantization": {"type": "string"},
        "max_input_tokens": {"type": "integer"},
        "prompts": {"type": "object", "additionalProperties": {"type": "string"}},
        "generation": {"type": "object"},
        # Relative paths inside the bundle folder, each with its sha256.
        "files": {"type": "object",
                  "propertyNames": {"pattern": r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\\\x00]+$"},
                  "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        "verification": {"type": "object"},
        "backend_config": {"type": "object",
                           "properties": {"files": {"type": "object",
                                                    "additionalProperties": {"type": "string"}}}},
        "name": {"type": "string"},
        "label": {"type": "string"},
        "created_at": {"type": "string"},
        "versions": {"type": "object"},
    },
}


def check_manifest_shape(data: dict, where: str) -> None:
    """Refuse a manifest of the wrong shape with one line naming the field, before any code
    trips over it (`"files": "x"`, a path that climbs out of the bundle...)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(data))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "the top level"
        message = (f"{error.instance!r} is not a relative path inside the bundle"
                   if error.validator == "pattern" and field == "files" else error.message[:200])
        raise BundleError(f"{where}: manifest field {field}: {message} (re-export the model)")


@dataclass
class Bundle:
    path: Path
    manifest: Manifest

    def file(self, role: str) -> Path:
        """The path of a model file named in backend_config["files"][role]."""
        try:
            rel = self.manifest.backend_config["files"][role]
        except KeyError:
            raise BundleError(f"{self.path / MANIFEST_NAME}: no {role!r} file recorded "
                              "(re-export the model)") from None
        return self.path / rel

    @property
    def sha256(self) -> str:
        """One hash for the whole bundle: the manifest's own bytes (which hold every file's hash)."""
        return sha256_file(self.path / MANIFEST_NAME)

    @property
    def display_name(self) -> str:
        name = self.manifest.name or self.path.name
        return f"{name} ({self.manifest.label})" if self.manifest.label else name


def package_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("sumctl", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Bundle:
    """Hash every file in the bundle and write the manifest last, atomically.

    A folder without a manifest is not a bundle, so a crash mid-export never leaves one that
    looks finished.
    """
    bundle_dir = Path(bundle_dir)
    manifest.files = {
        p.relative_to(bundle_dir).as_posix(): sha256_file(p)
        for p in sorted(bundle_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    }
    manifest.created_at = manifest.created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = strict_dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_text(bundle_dir / MANIFEST_NAME, text)
    return Bundle(bundle_dir, manifest)


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read a bundle's manifest and (by default) check every file against its sha256."""
    path = Path(path).expanduser()
    manifest_path = path / MANIFEST_NAME
    if not path.exists():
        raise BundleError(f"{path}: no such model bundle (export one with `sumctl export`, "
                          "or see `sumctl models list`)")
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a sumctl bundle, {MANIFEST_NAME} is missing "
                          "(export the model with `sumctl export`)")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, absurd nesting or digits
        detail = str(e)[:200] or "too deeply nested"
        raise BundleError(f"{manifest_path}: unreadable manifest ({detail}); re-export the "
                          "model") from None
    except OSError as e:
        raise BundleError(f"{manifest_path}: cannot read the manifest ({e.strerror})") from None
    manifest = Manifest.from_dict(data, str(manifest_path))
    bundle = Bundle(path, manifest)
    if verify:
        verify_files(bundle)
    return bundle


def verify_files(bundle: Bundle) -> None:
    if not bundle.manifest.files:
        raise BundleError(f"{bundle.path / MANIFEST_NAME}: lists no model files (re-export the model)")
    for rel, expected in bundle.manifest.files.items():
        file = bundle.path / rel
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle (re-export or copy the whole folder)")
        try:
            actual = sha256_file(file)
        except OSError as e:
            raise BundleError(f"{file}: cannot read the model file ({e.strerror}); check its "
                              "permissions") from None
        if actual != expected:
            raise BundleError(f"{file}: sha256 {actual[:12]}… does not match the manifest's "
                              f"{expected[:12]}… (the file is corrupt or was changed; re-export it)")

