"""Meeting minutes: decisions, action items with their owners and due dates, open questions,
each with the turns that state it (document.py); found by cues or a model (extract.py),
checked against their evidence (evidence.py) and merged across chapters (merge.py) before they
reach a reader; rendered as Markdown by render.py.

The names below are imported on first use: the CLI reads METHODS and TASK_STYLES for its
options without loading the extractors.
"""

from importlib import import_module

METHODS = ("cues", "hybrid", "model")
TASK_STYLES = ("gfm", "obsidian")

_PUBLIC = {
    "ActionItem": "document", "Decision": "document", "Evidence": "document",
    "MeetingInfo": "document", "Minutes": "document", "OpenQuestion": "document",
    "default_method": "extract", "extract_minutes": "extract", "lines_from": "extract",
    "render_minutes": "render",
}
__all__ = sorted([*_PUBLIC, "METHODS", "TASK_STYLES"])


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f"sumctl.runtime.minutes.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'sumctl.runtime.minutes' has no attribute {name!r}")


def __dir__():
    return __all__
