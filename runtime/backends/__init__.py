"""Backends: what turns a finished prompt into text, one per kind of model file.

The built-ins register here through the same `register_backend` a plug-in uses; each is
imported only when a bundle of its kind is loaded, so naming them costs nothing.
"""

from sumctl.runtime.backends.base import (ENTRY_POINT_GROUP, Backend, Generation, GenerationOptions,
                                          backend_class, backend_names, register_backend)

register_backend("onnx-t5", "sumctl.runtime.backends.onnx_t5:OnnxT5Backend")
register_backend("gguf", "sumctl.runtime.backends.gguf:GgufBackend")
register_backend("extractive", "sumctl.runtime.backends.extractive:ExtractiveBackend")
register_backend("openai-compat", "sumctl.runtime.backends.openai_compat:OpenAICompatBackend")

__all__ = ["ENTRY_POINT_GROUP", "Backend", "Generation", "GenerationOptions", "backend_class",
           "backend_names", "register_backend"]
