"""The edge runtime: transcripts in, summaries out, on CPUs. It never imports torch,
transformers or anything that only measures.

The flow, one module a step: transcript.py (files -> turns), cleaning.py, chunking.py
(chapters), prompts.py, summarizer.py (the one Summarizer over any backend: map, then a
recursive reduce; options.py is what it is asked), guards.py (loops, copies), outputs.py (summary and error files). Models:
bundle/ (the format), backends/ (what runs a bundle), models.py and store.py (where `--model`
points), default_model.py (the embedded default). watch/ is `sumctl watch`.

The names below are imported on first use, so that `import sumctl.runtime.errors` (every CLI
start) costs nothing beyond that module.
"""

from importlib import import_module

_PUBLIC = {
    "Summarizer": "sumctl.runtime.summarizer", "Summary": "sumctl.runtime.summarizer",
    "ChapterSummary": "sumctl.runtime.summarizer", "SummaryOptions": "sumctl.runtime.options",
    "Transcript": "sumctl.runtime.transcript", "Turn": "sumctl.runtime.transcript",
    "read_transcript": "sumctl.runtime.transcript",
    "Bundle": "sumctl.runtime.bundle", "load_bundle": "sumctl.runtime.bundle",
    "resolve_model": "sumctl.runtime.models",
    "Backend": "sumctl.runtime.backends", "register_backend": "sumctl.runtime.backends",
    "SumctlError": "sumctl.runtime.errors", "InputError": "sumctl.runtime.errors",
    "BundleError": "sumctl.runtime.errors", "OutputError": "sumctl.runtime.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sumctl.runtime' has no attribute {name!r}")


def __dir__():
    return __all__
