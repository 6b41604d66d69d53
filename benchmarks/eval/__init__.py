"""Evaluation data and metrics: records (the JSONL `sumctl bench` and `sumctl train` read),
dataset converters (QMSum, DialogSum), ROUGE with bootstrap intervals, peak memory, and cloud
outputs. Imports only the runtime."""

from sumctl.benchmarks.eval.metrics import ROUGE_TYPES, RougeScorer, bootstrap_ci, word_count
from sumctl.benchmarks.eval.records import Dataset, EvalRecord, load_dataset, parse_record

__all__ = ["ROUGE_TYPES", "Dataset", "EvalRecord", "RougeScorer", "bootstrap_ci", "load_dataset",
           "parse_record", "word_count"]
