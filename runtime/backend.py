"""The model abstraction: what every backend (ONNX T5, GGUF, plug-ins) provides.

A backend turns finished prompts into text. Everything above it (reading transcripts,
chapterization, the recursive reduce, outputs) is shared, so a new backend is one module.
Third-party backends register under the `sumctl.backends` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from importlib import import_module, metadata

from .bundle import Bundle
from .errors import BundleError

ENTRY_POINT_GROUP = "sumctl.backends"
BUILTIN_BACKENDS = {
    "onnx-t5": "sumctl.runtime.onnx_t5:OnnxT5Backend",
    "gguf": "sumctl.runtime.gguf_llama:GgufBackend",
    "extractive": "sumctl.runtime.extractive:ExtractiveBackend",
}


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    repetition_penalty: float | None = None  # None: the bundle's own (GGUF's repeat_penalty)

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
    """One loaded model. Not thread-safe: use one per worker."""

    name: str = ""
    # An extractive backend returns the input's own sentences by design: the guards do not call
    # that a copy or a transcript-shaped reply.
    extractive: bool = False
    # Whether GenerationOptions.stronger() changes what this backend generates; one that cannot
    # (an API answering at temperature 0 with its own settings) has its degenerate output
    # flagged without a retry that would only repeat the call.
    honours_stronger: bool = True

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


def backend_class(name: str) -> type[Backend]:
    target = BUILTIN_BACKENDS.get(name)
    if target is None:
        plugins = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        target = plugins.get(name)
    if target is None:
        known = sorted(set(BUILTIN_BACKENDS) | {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
        raise BundleError(f"unknown backend {name!r} (known: {', '.join(known)}); "
                          "install the plug-in that provides it or re-export the model")
    module_name, _, attr = target.partition(":")
    return getattr(import_module(module_name), attr)
