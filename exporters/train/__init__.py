"""`sumctl train`: LoRA fine-tuning of a compact model on your own transcripts, in the runtime's
own input shape (data.py), scored before and after by the runtime's Summarizer over the model in
memory (hf_backend.py, report.py); collect.py gathers references from a cloud model."""

from sumctl.exporters.train.collect import CollectResult, collect
from sumctl.exporters.train.run import TrainConfig, TrainResult, reply_loss_trainer, summary_lines, train

__all__ = ["CollectResult", "TrainConfig", "TrainResult", "collect", "reply_loss_trainer",
           "summary_lines", "train"]
