"""Evaluation data and quality metrics for `sumctl bench`.

An evaluation set is a JSONL file, one record a line:

    {"id": "dev_0", "transcript": "#Person1#: Hello ...", "reference": "Person2 has ..."}

`transcript` is the text itself, or the path (relative to the JSONL file) of a transcript in any
format the reader knows. Other keys (`meta`, ...) are kept and ignored.

Quality is ROUGE-1, ROUGE-2 and ROUGE-Lsum F1 from Google's rouge-score, with stemming and with
sentences on separate lines for Lsum (the convention of the summarization literature and of
Hugging Face `evaluate`). Each is reported as a mean with a 95% percentile-bootstrap interval
whose resampling is seeded, so the same inputs and seed give the same report.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .transcript import Transcript, parse_text, read_transcript

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
REQUIRED_FIELDS = ("id", "transcript", "reference")
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
# A transcript string that ends like a file name is taken as a path; one that does not exist is
# an error rather than a one-line "transcript" that would be summarized by mistake.
_PATH_SUFFIXES = (".txt", ".vtt", ".srt", ".json", ".md", ".text")


@dataclass
class EvalRecord:
    id: str
    transcript: Transcript
    reference: str
    line: int
    transcript_path: str | None = None  # as given in the JSONL, when it was a path
    extra: dict = field(default_factory=dict)

    @property
    def query(self) -> str | None:
        """The record's question, for a query-focused summary (QMSum's specific queries)."""
        query = self.extra.get("query")
        return query if isinstance(query, str) and query.strip() else None


@dataclass
class Dataset:
    path: Path
    records: list[EvalRecord]
    file_sha256: str
    total_records: int  # in the file, before --limit

    @property
    def sha256(self) -> str:
        """A hash of exactly what was evaluated: each record's id, transcript bytes and reference.

        It follows the transcript files a record points to, and ignores records cut by --limit,
        so two runs with the same hash scored the same pairs."""
        digest = hashlib.sha256()
        for r in self.records:
            digest.update(json.dumps([r.id, r.transcript.sha256, r.reference]).encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()

    def ids(self) -> list[str]:
        return [r.id for r in self.records]


def load_dataset(path: str | Path, *, limit: int | None = None) -> Dataset:
    """Read and check an evaluation JSONL. Every problem names the file, the line and the fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such data file (make one with `sumctl bench prepare`)") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; --data takes a JSONL file "
                         "(make one with `sumctl bench prepare`)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: invalid UTF-8 at byte {e.start} (save the file as UTF-8)") from None

    records: list[EvalRecord] = []
    seen: dict[str, int] = {}
    total = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        total += 1
        if limit is not None and len(records) >= limit:
            continue  # still count, so the report can say "5 of 500"
        record = _parse_record(path, lineno, line)
        if record.id in seen:
            raise InputError(f"{path}:{lineno}: id {record.id!r} repeats line {seen[record.id]} "
                             "(ids must be unique)")
        seen[record.id] = lineno
        records.append(record)
    if not records:
        raise InputError(f"{path}: no records (expected one JSON object a line with "
                         f"{', '.join(REQUIRED_FIELDS)})")
    return Dataset(path=path, records=records, file_sha256=hashlib.sha256(raw).hexdigest(),
                   total_records=total)


def _parse_record(path: Path, lineno: int, line: str) -> EvalRecord:
    where = f"{path}:{lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                         "each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with {', '.join(REQUIRED_FIELDS)}, "
                         f"got {type(obj).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise InputError(f"{where}: missing field {', '.join(repr(m) for m in missing)} "
                         f"(each line needs {', '.join(REQUIRED_FIELDS)})")
    rid = obj["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise InputError(f"{where}: 'id' must be a non-empty string or number")
    rid = str(rid)
    reference = obj["reference"]
    if not isinstance(reference, str) or not reference.strip():
        raise InputError(f"{where}: 'reference' must be a non-empty string (the gold summary)")
    value = obj["transcript"]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: 'transcript' must be the transcript text or a file path")
    transcript_path = None
    candidate = _as_path(path.parent, value)
    if candidate is not None:
        transcript_path = value
        if not candidate.is_file():
            raise InputError(f"{where}: transcript file {value!r} not found (paths are relative "
                             f"to {path.parent}; or give the transcript text itself)")
        transcript = read_transcript(candidate)
    else:
        transcript = parse_text(value, name=f"{where} (id {rid})")
        transcript.sha256 = hashlib.sha256(value.encode("utf-8")).hexdigest()
    extra = {k: v for k, v in obj.items() if k not in REQUIRED_FIELDS}
    return EvalRecord(rid, transcript, reference.strip(), lineno, transcript_path, extra)


def _as_path(base: Path, value: str) -> Path | None:
    """The file a transcript string names, or None if the string is the transcript itself."""
    if "\n" in value or len(value) > 1024:
        return None
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        if candidate.is_file():
            return candidate
    except OSError:  # e.g. a name too long for the file system: it is text
        return None
    return candidate if value.strip().lower().endswith(_PATH_SUFFIXES) else None


# --- metrics --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9#])")


def _punkt():
    """nltk's Punkt splitter when its data is installed (what `evaluate` uses), else None."""
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab")
        return nltk.sent_tokenize
    except (ImportError, LookupError):
        return None


def sentence_splitter_name() -> str:
    return "nltk-punkt" if _punkt() else "regex"


def split_sentences(text: str) -> list[str]:
    punkt = _punkt()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out: list[str] = []
    for ln in lines:
        parts = punkt(ln) if punkt else _SENTENCE_END.split(ln)
        out.extend(p.strip() for p in parts if p.strip())
    return out


def for_rouge_lsum(text: str) -> str:
    return "\n".join(split_sentences(text))


class RougeScorer:
    """ROUGE-1/2/Lsum F1, precision and recall per (prediction, reference) pair."""

    def __init__(self):
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)

    def score(self, prediction: str, reference: str) -> dict[str, float]:
        scores = self._scorer.score(for_rouge_lsum(reference), for_rouge_lsum(prediction))
        out = {}
        for name in ROUGE_TYPES:
            s = scores[name]
            out[name] = s.fmeasure
            out[f"{name}_precision"] = s.precision
            out[f"{name}_recall"] = s.recall
        return out


def bootstrap_ci(values, *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean and percentile-bootstrap interval of the mean. Resampling is seeded: same in, same out."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return {"mean": float(data.mean()), "low": float(np.percentile(means, tail)),
            "high": float(np.percentile(means, 100 - tail)), "n": int(data.size)}


def word_count(text: str) -> int:
    return len(text.split())


def compression_ratio(transcript_words: int, summary_words: int) -> float | None:
    """Transcript words per summary word; None for an empty summary (no ratio to speak of)."""
    return transcript_words / summary_words if summary_words else None


def percentile(values, q: float) -> float | None:
    data = [v for v in values if v is not None]
    return float(np.percentile(np.asarray(data, dtype=float), q)) if data else None


# --- BERTScore (optional) -----------------------------------------------------------------

BERTSCORE_MODEL = "roberta-large"


def bertscore_status(model_type: str = BERTSCORE_MODEL) -> tuple[bool, str]:
    """Whether BERTScore can run here without downloading anything, and why not.

    bert-score needs torch and a model in the local Hugging Face cache; the edge install has
    neither, so this never imports them: it only looks."""
    from importlib.util import find_spec

    if find_spec("bert_score") is None:
        return False, "skipped: the bert-score package is not installed (pip install bert-score)"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "skipped: huggingface_hub is not installed, so the model cache cannot be checked"
    found = try_to_load_from_cache(model_type, "config.json")
    if not isinstance(found, str):
        return False, (f"skipped: the {model_type} model is not in the local Hugging Face cache "
                       "(BERTScore never downloads during a bench)")
    return True, f"computed with {model_type} from the local cache"


def bertscore_f1(predictions: list[str], references: list[str], *,
                 model_type: str = BERTSCORE_MODEL) -> list[float]:
    """Per-pair BERTScore F1. Only called after bertscore_status() said yes; bert-score (and so
    torch) is imported here and nowhere else, and only on machines that have it."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bert_score import score  # noqa: PLC0415 - optional, heavy, and needs torch

    _, _, f1 = score(predictions, references, model_type=model_type, lang="en", verbose=False)
    return [float(x) for x in f1]
