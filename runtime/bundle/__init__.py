"""The bundle format, declared once: a folder of model files described by a `sumctl.json`
manifest (manifest.py), with a typed configuration per backend, the roles of its files, the
generation defaults of each model family and the quantizations an export offers (configs.py);
`generation` itself is typed in generation.py. Exporters build these; backends parse them."""

from sumctl.runtime.bundle.configs import (ADAPTER, CONFIG, DECODER, ENCODER, GGUF_QUANT_TYPES, MODEL,
                                           N_CTX_CAP, REPEAT_PENALTY, T5_MAX_INPUT_TOKENS, T5_QUANTIZATIONS, TOKENIZER,
                                           WEIGHTS, ExtractiveConfig, GgufConfig, OnnxT5Config,
                                           OpenAICompatConfig, causal_generation, gguf_manifest,
                                           gguf_max_input_tokens, seq2seq_generation,
                                           seq2seq_generation_for)
from sumctl.runtime.bundle.generation import GenerationDefaults
from sumctl.runtime.bundle.manifest import (FORMAT_VERSION, MANIFEST_NAME, MANIFEST_SCHEMA, Bundle,
                                            Manifest, check_manifest_shape, load_bundle,
                                            package_versions, sha256_file, verify_files,
                                            write_manifest)

__all__ = ["ADAPTER", "CONFIG", "DECODER", "ENCODER", "FORMAT_VERSION", "GGUF_QUANT_TYPES",
           "MANIFEST_NAME", "MANIFEST_SCHEMA", "MODEL", "N_CTX_CAP", "REPEAT_PENALTY",
           "T5_MAX_INPUT_TOKENS", "T5_QUANTIZATIONS", "TOKENIZER", "WEIGHTS", "Bundle", "ExtractiveConfig", "GenerationDefaults",
           "GgufConfig", "Manifest", "OnnxT5Config", "OpenAICompatConfig", "causal_generation",
           "check_manifest_shape", "gguf_manifest", "gguf_max_input_tokens", "load_bundle",
           "package_versions", "seq2seq_generation", "seq2seq_generation_for", "sha256_file",
           "verify_files", "write_manifest"]
