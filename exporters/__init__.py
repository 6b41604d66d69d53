"""Exporters: fine-tuned checkpoints into verified, self-describing bundles (the export extra:
torch, transformers, optimum, gguf). onnx_t5/ makes int8 ONNX from T5, gguf/ makes GGUF from
LLaMA-family models, train/ fine-tunes a compact model; base.py is the shell they share."""
