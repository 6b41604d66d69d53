"""T5 / FLAN-T5 -> ONNX bundles: export.py (the command), graph.py (int8 and int4 quantization, the
decoder merged with its cache branch, every weight stored once) and verify.py (token for token
against PyTorch)."""

from sumctl.exporters.onnx_t5.export import T5_MODEL_TYPES, export_t5, t5_generation_defaults
from sumctl.exporters.onnx_t5.graph import host_kernel, store_weights
from sumctl.exporters.onnx_t5.verify import reference_outputs, verify_bundle

__all__ = ["T5_MODEL_TYPES", "export_t5", "host_kernel", "reference_outputs", "store_weights",
           "t5_generation_defaults", "verify_bundle"]
