"""LLaMA-family checkpoints -> GGUF bundles through gguf-py and llama.cpp's quantizer, verified
against transformers' logits; LoRA adapters -> llama.cpp LoRA GGUFs."""

from sumctl.exporters.gguf.export import (QUANT_TYPES, SUPPORTED_MODEL_TYPES, compare_logits,
                                          export_llama, export_lora_gguf, quantize_gguf,
                                          verify_gguf, verify_lora_gguf, write_gguf,
                                          write_lora_gguf)

__all__ = ["QUANT_TYPES", "SUPPORTED_MODEL_TYPES", "compare_logits", "export_llama",
           "export_lora_gguf", "quantize_gguf", "verify_gguf", "verify_lora_gguf", "write_gguf",
           "write_lora_gguf"]
