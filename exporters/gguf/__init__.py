"""LLaMA-family checkpoints -> GGUF bundles: export.py (the command), writer.py (HF -> GGUF F16
with gguf-py), verify.py (llama.cpp against transformers; llama.cpp's quantizer), lora.py (peft
LoRA adapters -> llama.cpp LoRA GGUFs) and child.py (llama.cpp in a child process)."""

from sumctl.exporters.gguf.export import LLAMA_MODEL_TYPES, export_llama
from sumctl.exporters.gguf.lora import export_lora_gguf, verify_lora_gguf, write_lora_gguf
from sumctl.exporters.gguf.verify import QUANT_TYPES, compare_logits, quantize_gguf, verify_gguf
from sumctl.exporters.gguf.writer import write_gguf

__all__ = ["LLAMA_MODEL_TYPES", "QUANT_TYPES", "compare_logits", "export_llama",
           "export_lora_gguf", "quantize_gguf", "verify_gguf", "verify_lora_gguf", "write_gguf",
           "write_lora_gguf"]
