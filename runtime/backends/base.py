"""The model abstraction: what every backend (ONNX T5, GGUF, plug-ins) provides.

A backend turns finished prompts into text. Everything above it (reading transcripts,
chapterization, the recursive reduce, outputs) is shared, so a new backend is one module.

A bundle's manifest names its backend; `register_backend(name, target)` says which class that
name loads. The built-ins register themselves that way (backends/__init__.py), and so does a
third-party package: through an entry point in the `sumctl.backends` group, whose value is the
`module:Class` target, registered the first time a bundle asks for a name sumctl does not know.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from importlib import import_module

from sumctl.runtime.bundle import Bundle, GenerationDefaults
from sumctl.runtime.errors import BundleError

ENTRY_POINT_GROUP = "sumctl.backends"


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    repetition_penalty: float | None = None  # None: the bundle's own, where the backend has one
    # A JSON Schema the reply must follow, for backends that constrain decoding to one
    # (constrains_json); the others ignore it and are prompted for a plain-text format instead.
    json_schema: str | None = None

    @classmethod
    def from_defaults(cls, defaults: GenerationDefaults, length: str, **overrides) -> "GenerationOptions":
        """A summary's settings: the bundle's defaults for `length`, each replaced by an override
        that is not None (a GenerationOptions field). The repetition penalty is left to the
        backend, which applies the bundle's own unless a retry asks for more."""
        values = {"max_new_tokens": defaults.max_new_tokens_for(length), "num_beams": defaults.num_beams,
                  "no_repeat_ngram_size": defaults.no_repeat_ngram_size,
                  "length_penalty": defaults.length_penalty}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def stronger(self) -> "GenerationOptions":
        """Settings for the one retry of a degenerate generation: no repeated trigram (bigram,
        where trigrams were already blocked) and a firmer repetition penalty."""
        n = self.no_repeat_ngram_size
        return replace(self, no_repeat_ngram_size=3 if n == 0 or n > 3 else 2,
                       repetition_penalty=max(self.repetition_penalty or 1.0, 1.3))


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int


class Backend(ABC):
    """One loaded model. Not thread-safe: use one per worker.

    Args:
        bundle: the loaded bundle; its manifest's backend_config is this backend's to parse
            (runtime/bundle/configs.py declares the built-ins').
        threads: CPU threads for the model; None: the backend's own choice.

    A subclass sets `name` (what manifests say), implements count_tokens, input_budget and
    generate, and registers with register_backend.
    """

    name: str = ""
    # An extractive backend returns the input's own sentences by design: the guards do not call
    # that a copy or a transcript-shaped reply.
    extractive: bool = False
    # Whether GenerationOptions.stronger() changes what this backend generates; one that cannot
    # (an API answering at temperature 0 with its own settings) has its degenerate output
    # flagged without a retry that would only repeat the call.
    honours_stronger: bool = True
    # Whether generate() holds the reply to GenerationOptions.json_schema (llama.cpp grammars).
    constrains_json: bool = False
    # Whether a retry is cheapest right after its first attempt, one prompt at a time: a backend
    # that generates one prompt after another anyway and keeps the last prompt's cache (GGUF).
    # Others get every prompt in one call, then the retries in another, so that they can batch.
    retries_each_at_once: bool = False
    # How minutes are found with this backend by default (runtime/minutes/extract.py): the
    # method measured best on the labelled meetings for its kind of model.
    minutes_method: str = "cues"

    def __init__(self, bundle: Bundle, *, threads: int | None = None):
        self.bundle = bundle
        self.threads = threads

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs inside a prompt (no special tokens)."""

    @abstractmethod
    def input_budget(self, template: str, max_new_tokens: int) -> int:
        """Tokens left for the transcript when `template` wraps it and the output needs
        `max_new_tokens` (which matters where prompt and output share one context)."""

    @abstractmethod
    def generate(self, prompts: list[str], options: GenerationOptions) -> list[Generation]:
        """Generate one summary per prompt. Backends batch where that helps throughput."""

    def close(self) -> None:
        """Free the model's memory early (optional)."""


# Backend name -> its class, or the "module:Class" that holds it, imported on first use so that
# naming a backend costs nothing until a bundle of that kind is loaded.
_registry: dict[str, str | type[Backend]] = {}


def register_backend(name: str, target: str | type[Backend], *, replace: bool = False) -> None:
    """Make bundles whose manifest says `"backend": name` load `target`.

    Args:
        name: the manifest's backend name, e.g. "gguf".
        target: a Backend subclass, or "package.module:Class" (imported when a bundle first
            needs it).
        replace: allow re-registering a name; without it a second registration under a name
            already taken is refused, so a plug-in cannot silently shadow a built-in.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a backend needs a non-empty name")
    if isinstance(target, str):
        if ":" not in target:
            raise ValueError(f"backend {name!r}: target {target!r} must look like 'module:Class'")
    elif not (isinstance(target, type) and issubclass(target, Backend)):
        raise TypeError(f"backend {name!r}: {target!r} is not a Backend subclass")
    if not replace and name in _registry and _registry[name] != target:
        raise ValueError(f"backend {name!r} is already registered ({_registry[name]!r})")
    _registry[name] = target


def backend_names() -> list[str]:
    """Every backend a manifest may name: registered ones and installed plug-ins."""
    from importlib import metadata  # scanning installed packages costs ~10 ms: only on demand

    return sorted(set(_registry) | {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def backend_class(name: str) -> type[Backend]:
    """The class that loads bundles of backend `name`; a BundleError naming the fix if none."""
    if name not in _registry:
        from importlib import metadata

        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                try:
                    register_backend(ep.name, ep.value)
                except (TypeError, ValueError) as e:
                    raise BundleError(f"the plug-in entry point {ep.name} = {ep.value}: {e}; "
                                      "reinstall or fix the package that provides it") from None
                break
        else:
            raise BundleError(f"unknown backend {name!r} (known: {', '.join(backend_names())}); "
                              "install the plug-in that provides it or re-export the model")
    target = _registry[name]
    if isinstance(target, type):
        return target
    # Looked up each time, not cached: after the first load it is a sys.modules lookup, and a
    # reloaded module's class is the one used.
    module_name, _, attr = target.partition(":")
    try:
        return getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise BundleError(f"backend {name!r}: cannot load {target} ({e}); reinstall the package "
                          "that provides it") from None
