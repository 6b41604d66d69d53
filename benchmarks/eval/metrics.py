"""Quality metrics for `sumctl bench` and `sumctl train`.

Quality is ROUGE-1, ROUGE-2 and ROUGE-Lsum F1 from Google's rouge-score, with stemming and with
sentences on separate lines for Lsum (the convention of the summarization literature and of
Hugging Face `evaluate`). Each is reported as a mean with a 95% percentile-bootstrap interval
whose resampling is seeded, so the same inputs and seed give the same report.
"""

from __future__ import annotations

import re

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95

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
                 confidence: float = CONFIDENCE) -> dict[str, float | None]:
    """Mean and percentile-bootstrap interval of the mean. Resampling is seeded: same in, same out."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        # Nothing to average: null in a report, where NaN would make report.json not JSON.
        return {"mean": None, "low": None, "high": None, "n": 0}
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
