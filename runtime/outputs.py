"""Summary files: `<stem>.summary.md` / `.json` / `.txt`, written atomically.

A summary never lands on an input file, and never replaces the summary of a different source
that happens to share its stem: that one gets `<stem>-2.summary.*`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .bundle import atomic_write_text
from .summarizer import Summary

OUTPUT_FORMATS = ("md", "json", "txt")
_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_stem(name: str) -> str:
    """A file stem that cannot escape its folder or hide: no separators, no leading dots."""
    stem = Path(name.replace("\\", "/")).name
    for suffix in (".summary", ".json", ".vtt", ".srt", ".txt", ".md"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = _UNSAFE.sub("_", stem).strip("._-")[:120]
    return stem or "transcript"


def output_paths(out_dir: Path, stem: str, formats: tuple[str, ...]) -> dict[str, Path]:
    return {fmt: out_dir / f"{stem}.summary.{fmt}" for fmt in formats}


def claim_stem(out_dir: Path, stem: str, source_key: str, formats: tuple[str, ...],
               taken: set[Path] | None = None, protected: set[Path] | None = None) -> str:
    """The first of stem, stem-2, stem-3... whose outputs are free or already this source's.

    `source_key` is what identifies the source (its resolved path); a previous summary of the
    same source is replaced, anyone else's is kept. `taken` holds paths claimed earlier in this
    run; `protected` holds paths that must never be written (the inputs).
    """
    taken = taken or set()
    protected = protected or set()
    for n in range(1, 10_000):
        candidate = stem if n == 1 else f"{stem}-{n}"
        paths = output_paths(out_dir, candidate, formats) | output_paths(out_dir, candidate, ("json",))
        resolved = {p.resolve() for p in paths.values()}
        if resolved & taken or resolved & protected:
            continue
        if all(not p.exists() for p in paths.values()) or _owned_by(paths["json"], source_key):
            return candidate
    raise RuntimeError(f"{out_dir}: no free output name for {stem}")


def _owned_by(json_path: Path, source_key: str) -> bool:
    try:
        return json.loads(json_path.read_text(encoding="utf-8")).get("source_key") == source_key
    except (OSError, ValueError, AttributeError):
        return False


def write_summary(summary: Summary, out_dir: Path, stem: str, formats: tuple[str, ...],
                  *, source_key: str, extra: dict | None = None) -> list[Path]:
    """Write the chosen formats. The JSON record is always written: it is how a later run knows
    whose summary a file is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = summary.to_dict() | {"source_key": source_key} | (extra or {})
    written = []
    for fmt, path in output_paths(out_dir, stem, tuple(dict.fromkeys((*formats, "json")))).items():
        if fmt == "json":
            text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        elif fmt == "md":
            text = summary.to_markdown()
        else:
            text = summary.text.strip() + "\n"
        atomic_write_text(path, text)
        written.append(path)
    return written
