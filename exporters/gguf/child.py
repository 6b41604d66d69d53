"""llama.cpp's side of an export (verification and quantization), in a child process.

llama.cpp reports some bad inputs by aborting the process (a C++ exception that nothing
catches, a GGML_ASSERT): in-process, that would end sumctl with a core dump and a backtrace on
the user's terminal, and leave the export's work folder behind. In a child, an abort is just an
exit status: the parent turns it into one line that names the file, and removes its work.

    python -m sumctl.exporters.gguf.child TASK REQUEST.json RESULT.npz
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sumctl.exporters.errors import ExportError
from sumctl.runtime.jsonout import strict_dumps

_TIMEOUT_S = 3600


def run_in_child(task: str, request: dict, *, subject: Path, doing: str) -> dict:
    """Run `task` with `request` in a fresh interpreter; its arrays (numpy) come back by name.
    Any crash of the child is an ExportError naming `subject`."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="sumctl-llama-") as work:
        request_path, result_path = Path(work) / "request.json", Path(work) / "result.npz"
        request_path.write_text(strict_dumps(request), encoding="utf-8")
        env = dict(os.environ, PYTHONFAULTHANDLER="0")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "sumctl.exporters.gguf.child", task,
                 str(request_path), str(result_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, timeout=_TIMEOUT_S, preexec_fn=_no_core_dump)
        except subprocess.TimeoutExpired:
            raise ExportError(f"{subject}: llama.cpp did not finish {doing} in {_TIMEOUT_S} s; "
                              "nothing was written") from None
        if proc.returncode != 0 or not result_path.is_file():
            raise ExportError(f"{subject}: llama.cpp {_how_it_ended(proc.returncode)} while "
                              f"{doing}{_last_words(proc.stderr)}; nothing was written. The "
                              "file is likely one llama.cpp cannot read: check its tokenizer "
                              "and architecture")
        with np.load(result_path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}


def _no_core_dump() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed ({name})"
    return f"failed (exit status {returncode})"


def _last_words(stderr: bytes) -> str:
    """The child's most telling line: llama.cpp's own error, not the backtrace after it."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    for marker in ("what():", "error", "GGML_ASSERT", "Error"):
        for line in lines:
            if marker in line:
                return f": {line[:300]}"
    return f": {lines[-1][:300]}" if lines else ""


# --- the child's side ----------------------------------------------------------------------------


def _logits(request: dict) -> dict:
    """llama.cpp's tokenization of each text and its logits over the given token ids."""
    import numpy as np

    from sumctl.exporters.gguf.verify import open_llama

    lora = request.get("lora")
    llm = open_llama(Path(request["gguf"]), threads=request["threads"], n_ctx=512, logits_all=True,
                     lora=Path(lora) if lora else None, flash_attention=bool(request.get("flash_attn")))
    result = {}
    try:
        for i, item in enumerate(request["texts"]):
            result[f"tokens_{i}"] = np.array(
                llm.tokenize(item["text"].encode("utf-8"), add_bos=item["add_bos"],
                             special=item["special"]), dtype=np.int64)
            llm.reset()
            llm.eval(item["ids"])
            result[f"logits_{i}"] = np.array(llm.scores[: len(item["ids"])], dtype=np.float32)
    finally:
        llm.close()
    return result


def _quantize(request: dict) -> dict:
    import numpy as np

    from sumctl.exporters.gguf.verify import quantize_in_process

    quantize_in_process(Path(request["src"]), Path(request["dst"]), request["quant"],
                        threads=request["threads"])
    return {"done": np.array([1])}


_TASKS = {"logits": _logits, "quantize": _quantize}


def main(argv: list[str]) -> int:
    import numpy as np

    task, request_path, result_path = argv
    result = _TASKS[task](json.loads(Path(request_path).read_text(encoding="utf-8")))
    np.savez(result_path, **result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
