"""T5 / FLAN-T5 -> ONNX bundles: export.py (the command), graph.py (int8 quantization, the
decoder merged with its cache branch, every weight stored once) and verify.py (token for token
against PyTorch)."""

from sumctl.exporters.onnx_t5.export import SUPPORTED_MODEL_TYPES, export_t5, generation_defaults
from sumctl.exporters.onnx_t5.graph import host_kernel, store_weights
from sumctl.exporters.onnx_t5.verify import reference_outputs, verify_bundle

__all__ = ["SUPPORTED_MODEL_TYPES", "export_t5", "generation_defaults", "host_kernel",
           "reference_outputs", "store_weights", "verify_bundle"]
