"""A GGUF file's metadata and tensor table, read by llama.cpp's own parser.

gguf-py's `GGUFReader` builds a NumPy view for every element of every array before anything can
be read: 2.6-5 s for SmolLM2's 49k-token vocabulary and about 17 s for Gemma 3's 262k, each time
a file is opened. The export opens every file it writes (its tensor types go in the manifest),
and the training and benchmark tools open the base's vocabulary, so that parse dominated them.
llama-cpp-python ships ggml's C parser (`gguf_init_from_file` in libggml-base), the one that
loads the model at run time; reading through it takes milliseconds, and what it reads is
exactly what llama.cpp will see. gguf-py stays for writing files and dequantizing tensors, which
it does on the arrays `tensor_data` maps from the file.

libggml-base links libgomp, which reads OMP_WAIT_POLICY once when it loads, so the library is
loaded through `import_llama_cpp` like every other use of llama.cpp: a process that plans its
wait policy (watch, batch, serve) does so before it reads a header, as before it loads a model.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sumctl.runtime.errors import BundleError
from sumctl.runtime.fsutil import stderr_silenced

# enum gguf_type in ggml's gguf.h, and the ctypes scalar each numeric one is stored as.
_STRING, _ARRAY, _BOOL = 8, 9, 7
_SCALARS = {0: ctypes.c_uint8, 1: ctypes.c_int8, 2: ctypes.c_uint16, 3: ctypes.c_int16,
            4: ctypes.c_uint32, 5: ctypes.c_int32, 6: ctypes.c_float, 7: ctypes.c_int8,
            10: ctypes.c_uint64, 11: ctypes.c_int64, 12: ctypes.c_double}


@dataclass(frozen=True)
class GgufTensorInfo:
    name: str
    type_id: int  # enum ggml_type, as gguf.GGMLQuantizationType numbers it
    offset: int  # from the start of the data section
    nbytes: int
    # GGUF order (ne[0], the row length, first), trailing 1s left out as ggml_n_dims does: the
    # parser keeps no dimension count, and writers store none of those 1s.
    shape: tuple[int, ...] = ()

    @property
    def type_name(self) -> str:
        """"Q4_1", as gguf-py's GGMLQuantizationType names it, from ggml's own table (gguf-py is
        an optional extra; ggml comes with every llama-cpp-python)."""
        return _libggml_base().ggml_type_name(self.type_id).decode("ascii").upper()


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    fields: dict  # key -> str, int, float, bool, or a list of them
    tensors: tuple[GgufTensorInfo, ...]
    # key -> (enum gguf_type, the item's gguf_type for an array or None), as gguf.GGUFValueType
    # numbers them: what a writer needs to store a value again as it was.
    field_types: dict = field(default_factory=dict)
    data_offset: int = 0  # where the data section starts in the file

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    def tensor_data(self, info: GgufTensorInfo):
        """The tensor's bytes mapped read-only, shaped as gguf-py's reader shapes them: numpy
        order, float and integer types as their dtype, quantized types as uint8 with a row of
        blocks on the last axis (what gguf.quants.dequantize takes)."""
        import numpy as np
        from gguf import GGMLQuantizationType
        from gguf.quants import quant_shape_to_byte_shape

        kind = GGMLQuantizationType(info.type_id)
        shape = tuple(reversed(info.shape)) or (1,)
        plain = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
                 GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
                 GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
                 GGMLQuantizationType.I64: np.int64}
        dtype = plain.get(kind, np.uint8)
        if dtype is np.uint8:
            shape = quant_shape_to_byte_shape(shape, kind)
        needed = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if needed != info.nbytes:
            raise BundleError(f"{self.path}: tensor {info.name} holds {info.nbytes} bytes, not the "
                              f"{needed} its shape and type need; the GGUF is corrupt")
        try:
            return np.memmap(self.path, dtype=dtype, mode="r", offset=self.data_offset + info.offset, shape=shape)
        except (OSError, ValueError) as e:
            raise BundleError(f"{self.path}: tensor {info.name} cannot be read ({e}); the GGUF is "
                              "truncated or corrupt") from None


class _InitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]


@lru_cache(maxsize=1)
def _libggml_base() -> ctypes.CDLL:
    from sumctl.runtime.backends.gguf import import_llama_cpp

    try:
        lib_dir = Path(import_llama_cpp().__file__).parent / "lib"
    except ImportError:
        raise BundleError("reading a GGUF needs llama-cpp-python (pip install llama-cpp-python)") from None
    candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
    if not candidates:
        raise BundleError(f"{lib_dir}: llama-cpp-python's libggml-base is missing; reinstall "
                          "llama-cpp-python")
    lib = ctypes.CDLL(str(candidates[0]))
    ctx, i64, size, cstr = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t, ctypes.c_char_p
    signatures = {
        "gguf_init_from_file": ([cstr, _InitParams], ctx), "gguf_free": ([ctx], None),
        "gguf_get_n_kv": ([ctx], i64), "gguf_get_key": ([ctx, i64], cstr),
        "gguf_get_kv_type": ([ctx, i64], ctypes.c_int), "gguf_get_arr_type": ([ctx, i64], ctypes.c_int),
        "gguf_get_arr_n": ([ctx, i64], size), "gguf_get_arr_data": ([ctx, i64], ctypes.c_void_p),
        "gguf_get_arr_str": ([ctx, i64, size], cstr), "gguf_get_val_str": ([ctx, i64], cstr),
        "gguf_get_val_data": ([ctx, i64], ctypes.c_void_p),
        "ggml_type_name": ([ctypes.c_int], cstr),
        "gguf_get_n_tensors": ([ctx], i64), "gguf_get_tensor_name": ([ctx, i64], cstr),
        "gguf_get_tensor_type": ([ctx, i64], ctypes.c_int), "gguf_get_tensor_offset": ([ctx, i64], size),
        "gguf_get_tensor_size": ([ctx, i64], size), "gguf_get_data_offset": ([ctx], size),
        "gguf_get_tensor_ne": ([ctx, i64], ctypes.POINTER(i64)),
    }
    for name, (args, result) in signatures.items():
        # These are gguf.h's signatures since ggml's GGUF rewrite (int64 ids, early 2025), which
        # every llama-cpp-python this project accepts (>=0.3.8) carries; gguf_get_tensor_ne
        # since llama.cpp b9987 (mid 2026).
        function = getattr(lib, name, None)
        if function is None:
            raise BundleError(f"{candidates[0]}: this llama-cpp-python has no {name}; upgrade it "
                              "(pip install -U llama-cpp-python)")
        function.argtypes, function.restype = args, result
    return lib


def read_gguf_header(path: str | os.PathLike) -> GgufHeader:
    """Every metadata field and the tensor table of the GGUF at `path` (no tensor data is read).
    A file llama.cpp cannot parse is a one-line BundleError."""
    path = Path(path)
    lib = _libggml_base()
    if not path.is_file():
        raise BundleError(f"{path}: no such GGUF file")
    with stderr_silenced():  # ggml logs its reason to fd 2; the error below names the file
        ctx = lib.gguf_init_from_file(os.fsencode(path), _InitParams(True, None))
    if not ctx:
        raise BundleError(f"{path}: llama.cpp cannot read this file as GGUF (truncated, corrupt or "
                          "not a GGUF); re-export or re-download it")
    try:
        keys = [lib.gguf_get_key(ctx, i).decode("utf-8") for i in range(lib.gguf_get_n_kv(ctx))]
        fields = {key: _value(lib, ctx, i, path) for i, key in enumerate(keys)}
        types = {key: _value_type(lib, ctx, i) for i, key in enumerate(keys)}
        tensors = tuple(GgufTensorInfo(lib.gguf_get_tensor_name(ctx, i).decode("utf-8"),
                                       lib.gguf_get_tensor_type(ctx, i), lib.gguf_get_tensor_offset(ctx, i),
                                       lib.gguf_get_tensor_size(ctx, i), _shape(lib.gguf_get_tensor_ne(ctx, i)))
                        for i in range(lib.gguf_get_n_tensors(ctx)))
        data_offset = lib.gguf_get_data_offset(ctx)
    finally:
        lib.gguf_free(ctx)
    return GgufHeader(path, fields, tensors, types, data_offset)


_MAX_DIMS = 4  # GGML_MAX_DIMS


def _shape(ne) -> tuple[int, ...]:
    dims = [int(ne[d]) for d in range(_MAX_DIMS)]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def _value_type(lib, ctx, key_id: int) -> tuple[int, int | None]:
    kind = lib.gguf_get_kv_type(ctx, key_id)
    return kind, lib.gguf_get_arr_type(ctx, key_id) if kind == _ARRAY else None


def _value(lib, ctx, key_id: int, path: Path):
    kind = lib.gguf_get_kv_type(ctx, key_id)
    if kind == _STRING:
        return _text(lib.gguf_get_val_str(ctx, key_id), path)
    if kind in _SCALARS:
        return _scalar(kind, lib.gguf_get_val_data(ctx, key_id), 1)[0]
    if kind != _ARRAY:  # ggml's parser refuses unknown types; never reached
        raise BundleError(f"{path}: a metadata value of type {kind} cannot be read")
    item, n = lib.gguf_get_arr_type(ctx, key_id), lib.gguf_get_arr_n(ctx, key_id)
    if item == _STRING:
        return [_text(lib.gguf_get_arr_str(ctx, key_id, j), path) for j in range(n)]
    if item not in _SCALARS:  # nested arrays: ggml's parser refuses them; never reached
        raise BundleError(f"{path}: an array of type {item} cannot be read")
    return _scalar(item, lib.gguf_get_arr_data(ctx, key_id), n) if n else []


def _scalar(kind: int, address: int, n: int) -> list:
    values = (_SCALARS[kind] * n).from_address(address)[:]
    return [bool(v) for v in values] if kind == _BOOL else list(values)


def _text(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{path}: a metadata string is not UTF-8; the GGUF is corrupt") from None
