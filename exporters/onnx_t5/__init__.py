"""T5 / FLAN-T5 -> ONNX bundles: a KV-cache decoder merged into one graph, weights stored once,
int8 by default, verified token for token against PyTorch."""

from sumctl.exporters.onnx_t5.export import (SUPPORTED_MODEL_TYPES, export_t5, generation_defaults,
                                             host_kernel, reference_outputs, verify_bundle)

__all__ = ["SUPPORTED_MODEL_TYPES", "export_t5", "generation_defaults", "host_kernel",
           "reference_outputs", "verify_bundle"]
