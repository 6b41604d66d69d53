"""The edge runtime. It never imports torch or transformers."""

from .errors import BundleError, InputError, SumctlError
from .summarizer import ChapterSummary, Summarizer, Summary
from .transcript import Transcript, Turn, read_transcript

__all__ = ["BundleError", "ChapterSummary", "InputError", "Summarizer", "Summary", "SumctlError",
           "Transcript", "Turn", "read_transcript"]
