"""Summary and error files: `<stem>.summary.md` / `.json` / `.txt` and `<stem>.error.txt`.

Naming lives here, once, for `sumctl summarize` and `sumctl watch` alike:
- a summary never lands on an input file, and never replaces the summary (or sits beside the
  error file) of a different source that shares its stem: that one gets `<stem>-2.*`;
- a name never exceeds the filesystem's 255 bytes, temporary wrapping included, however many
  bytes each character of the transcript's name takes;
- the source a file belongs to is recorded inside it (the JSON record's `source_key`, the error
  file's `source:` line, JSON-escaped so a newline in a name cannot forge or break it), which is
  how a later run tells its own files from a user's; a name that is not UTF-8 is recorded, and
  its stem made, by fsutil.display_name's rule, so every name can be written;
- a record holds no NaN or infinity: it is written strictly, or not at all.

A summary's files are written as one set: every temporary first, then the renames, so a full
disk or a kill leaves either the whole set or none of it (and a swept temporary).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sumctl.runtime.errors import OutputError
from sumctl.runtime.fsutil import (FILE_MODE, NAME_MAX_BYTES, TEMP_OVERHEAD_BYTES, UnsafePath,
                     display_name, fsync_dir, lexists, open_dir, read_small, relative_parts,
                     unlink_quietly, utf8_cap, write_temp)

if TYPE_CHECKING:  # the summarizer (and its backends) are not needed to name a file
    from sumctl.runtime.summarizer import Summary

OUTPUT_FORMATS = ("md", "json", "txt")
# What a summary writes unless told otherwise: the Markdown a person reads, the record a script reads.
DEFAULT_FORMATS = ("md", "json")
SUMMARY_INFIX = ".summary."
ERROR_SUFFIX = ".error.txt"
ERROR_HEADER = "sumctl could not summarize this file."
MAX_STEM_NUMBER = 9_999
_LONGEST_SUFFIX = max(len(f"{SUMMARY_INFIX}{fmt}") for fmt in OUTPUT_FORMATS)
# The longest name we make is the temporary of `<stem>-9999.summary.json`.
STEM_MAX_BYTES = (NAME_MAX_BYTES - TEMP_OVERHEAD_BYTES - len(f"-{MAX_STEM_NUMBER}")
                  - max(_LONGEST_SUFFIX, len(ERROR_SUFFIX)))
# Our own JSON records: enough for the chapters of the longest transcript we accept.
RECORD_MAX_BYTES = 16 << 20
_UNSAFE = re.compile(r"[^\w.\-]+")
SUMMARY_NAME = re.compile(r"^(?P<stem>.+)\.summary\.(?P<fmt>md|json|txt)$")


@dataclass(frozen=True)
class OutputPlace:
    """Where one source's summary and error files go."""

    folder: Path      # the folder they are written in
    base_stem: str    # their names' base, before claim_stem numbers it
    source_key: str   # recorded inside them: the source's real path, or "<stdin>"


def parse_record(data: bytes | None) -> dict | None:
    """A JSON record's bytes as a dict, or None for nothing, not JSON, JSON nested deep enough
    to exhaust the parser, or JSON that is not an object."""
    if data is None:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def output_place(source: Path | None, *, out: Path | None = None, root: Path | None = None) -> OutputPlace:
    """The place of a source's outputs, for `summarize` and `watch` alike: beside the source, in
    the real location of its folder, or under `out`. With `root` (a watched tree) a source in a
    subfolder of root has its outputs in the same subfolder under `out`. The source key is the
    source's real path, which tells two same-named sources apart; stdin is `<stdin>`."""
    if source is None:
        return OutputPlace(Path(out) if out is not None else Path.cwd(), "stdin", "<stdin>")
    parent = Path(os.path.realpath(Path(source).parent))
    if out is not None:
        rel = None
        if root is not None:
            try:
                rel = parent.relative_to(root)
            except ValueError:
                rel = None
        parent = Path(out) if rel is None or str(rel) == "." else Path(out) / rel
    return OutputPlace(parent, safe_stem(Path(source).name), display_name(os.path.realpath(source)))


def safe_stem(name: str) -> str:
    """A file stem that cannot escape its folder or hide: no separators, no leading dots, and
    short enough in UTF-8 bytes for every name built on it."""
    stem = Path(name.replace("\\", "/")).name
    for suffix in (".summary", ".json", ".vtt", ".srt", ".txt", ".md"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = utf8_cap(_UNSAFE.sub("_", stem).strip("._-"), STEM_MAX_BYTES).rstrip("._-")
    return stem or "transcript"


class OutputFolder:
    """A folder for outputs, held open by descriptor so every name is looked up in it and never
    through a symlink planted after the check.

    With `within` (a real path), the folder must lie inside it: it is opened (and made, if
    missing) one component at a time from `within` without following symlinks. Without it, the
    path is the user's own choice and opened as given. `create=False` only looks: a missing
    folder is an error, never made."""

    def __init__(self, path: str | os.PathLike, *, within: Path | None = None,
                 create: bool = True):
        path = Path(path)
        try:
            if within is not None:
                self.real = Path(os.path.realpath(path))
                self.fd = open_dir(within, relative_parts(within, self.real), create=create)
            else:
                if create:
                    path.mkdir(parents=True, exist_ok=True)
                self.real = Path(os.path.realpath(path))
                self.fd = os.open(self.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except UnsafePath as e:
            raise OutputError(f"{path}: refusing to write there ({e})") from None
        except OSError as e:
            raise OutputError.from_os_error(path, e, "cannot create the output folder") from None

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def path(self, name: str) -> Path:
        return self.real / name

    def exists(self, name: str) -> bool:
        return lexists(self.fd, name)

    def read_record(self, name: str) -> dict | None:
        """One of our JSON records (a dict), or None: missing, not a regular file, too large,
        or not JSON a hostile sharer could make us choke on."""
        return parse_record(read_small(self.fd, name, RECORD_MAX_BYTES))

    def error_owner(self, name: str) -> str | None:
        """The source key an error file of ours records, or None if it is not ours."""
        data = read_small(self.fd, name, 1 << 20)
        return None if data is None else parse_error_owner(data)

    def write_set(self, files: dict[str, str]) -> list[Path]:
        """Write name -> text as one set: all temporaries, then the renames in order (the JSON
        record first, so whoever sees a summary file can tell by its record whose it is).
        Nothing is left if a write fails."""
        staged: list[tuple[str, str]] = []
        try:
            for name, text in files.items():
                staged.append((write_temp(self.fd, name, text.encode("utf-8"), FILE_MODE), name))
            for temp, name in staged:
                os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as e:
            for temp, _ in staged:
                unlink_quietly(self.fd, temp)
            raise OutputError.from_os_error(self.real / next(iter(files)), e,
                                            "cannot write the output") from None
        fsync_dir(self.fd)
        return [self.real / name for name in files]

    def remove(self, name: str) -> None:
        unlink_quietly(self.fd, name)


def output_names(stem: str, formats: tuple[str, ...]) -> dict[str, str]:
    """Format -> file name; the JSON record is always among them (it says whose files they are)."""
    return {fmt: f"{stem}{SUMMARY_INFIX}{fmt}" for fmt in dict.fromkeys((*formats, "json"))}


def claim_stem(folder: OutputFolder, stem: str, source_key: str, formats: tuple[str, ...],
               taken: set[Path] | None = None, protected: set[Path] | None = None) -> str:
    """The first of stem, stem-2, stem-3... whose outputs are free or already this source's,
    and whose error file is free or this source's.

    `source_key` is what identifies the source (its resolved path); a previous summary of the
    same source is replaced, anyone else's is kept. `taken` holds paths claimed earlier in this
    run; `protected` holds paths that must never be written (the inputs).
    """
    taken = taken or set()
    protected = protected or set()
    for n in range(1, MAX_STEM_NUMBER + 1):
        candidate = stem if n == 1 else f"{stem}-{n}"
        names = output_names(candidate, formats)
        paths = {folder.path(name) for name in names.values()}
        if paths & taken or paths & protected:
            continue
        record_name = names["json"]
        free = not any(folder.exists(name) for name in names.values())
        mine = free or (folder.read_record(record_name) or {}).get("source_key") == source_key
        error_name = f"{candidate}{ERROR_SUFFIX}"
        # An error file without our `source:` line may be the user's own: keep off it too.
        if mine and (not folder.exists(error_name) or folder.error_owner(error_name) == source_key):
            return candidate
    raise OutputError(f"{folder.real}: no free output name for {stem} after {MAX_STEM_NUMBER} "
                      "tries (clean up old summaries there)")


def write_summary(summary: Summary, folder: OutputFolder, stem: str, formats: tuple[str, ...],
                  *, source_key: str, extra: dict | None = None) -> list[Path]:
    """Write the chosen formats, JSON record first in the returned list. The record is checked
    against its published schema first, so no file that breaks it is ever written."""
    record = summary.to_dict() | {"source_key": source_key} | (extra or {})
    validate_summary_record(record, name=str(folder.path(output_names(stem, formats)["json"])))
    texts = {}
    for fmt, name in sorted(output_names(stem, formats).items(), key=lambda kv: kv[0] != "json"):
        if fmt == "json":
            try:
                texts[name] = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            except ValueError as e:  # a NaN or infinity that got past the readers' checks
                raise OutputError(f"{folder.path(name)}: the summary record holds a number JSON "
                                  f"cannot say ({e}); this is a bug in sumctl, please report "
                                  "it") from None
        elif fmt == "md":
            texts[name] = summary.to_markdown()
        else:
            texts[name] = summary.text.strip() + "\n"
    written = folder.write_set(texts)
    # The caller lists outputs in its formats' order, the record where the user asked for it.
    order = list(output_names(stem, formats))
    return sorted(written, key=lambda p: order.index(SUMMARY_NAME.match(p.name)["fmt"]))


SUMMARY_SCHEMA = Path(__file__).parent / "schemas" / "summary.schema.json"


@cache
def summary_validator():
    import jsonschema  # ~50 ms: only once a summary is written

    return jsonschema.Draft202012Validator(json.loads(SUMMARY_SCHEMA.read_text(encoding="utf-8")))


def validate_summary_record(record: dict, *, name: str = "summary record") -> None:
    """Raise OutputError naming the first field of `record` that breaks the published schema
    (runtime/schemas/summary.schema.json)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(summary_validator().iter_errors(record))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise OutputError(f"{name}: the summary record breaks its schema at {where}: "
                          f"{error.message}; this is a bug in sumctl, please report it")


# --- error files -----------------------------------------------------------------------------


def error_text(source_key: str, sha256: str, attempts: int, retry: str, reason: str) -> str:
    reason = " ".join(reason.splitlines())
    return (f"{ERROR_HEADER}\nsource: {json.dumps(source_key, ensure_ascii=False)}\n"
            f"sha256: {sha256}\nattempts: {attempts}\n{retry}\nerror: {reason}\n")


def parse_error_owner(data: bytes) -> str | None:
    """The `source:` of one of our error files. Older files wrote it raw; those still count."""
    text = data.decode("utf-8", errors="replace")
    if not text.startswith(ERROR_HEADER):
        return None
    for line in text.splitlines()[1:4]:
        if line.startswith("source: "):
            value = line[len("source: "):]
            if value.startswith('"'):
                try:
                    owner = json.loads(value)
                except ValueError:
                    return None
                return owner if isinstance(owner, str) else None
            return value
    return None


def write_error_file(folder: OutputFolder, stem: str, text: str) -> Path:
    return folder.write_set({f"{stem}{ERROR_SUFFIX}": text})[0]


def remove_own_error_files(folder: OutputFolder, base_stem: str, source_key: str) -> int:
    """After a success, drop this source's stale error files (never another source's).

    Stems are claimed in order (a, a-2, a-3...), so walking them until one has neither a
    summary nor an error file visits every candidate without listing the folder, which
    would cost O(files in the folder) per summary."""
    removed = 0
    for n in range(1, MAX_STEM_NUMBER + 1):
        stem = base_stem if n == 1 else f"{base_stem}-{n}"
        error_name = f"{stem}{ERROR_SUFFIX}"
        has_error = folder.exists(error_name)
        if has_error and folder.error_owner(error_name) == source_key:
            folder.remove(error_name)
            removed += 1
        elif not has_error and not folder.exists(f"{stem}{SUMMARY_INFIX}json"):
            return removed
    return removed


def sumctl_output_kind(folder: OutputFolder, name: str) -> str | None:
    """'summary' or 'error' if `name` in the folder is a file sumctl wrote, else None.

    Judged by content, not by name alone: `q3.summary.review.txt` and `parse.error.txt` can be
    a user's transcripts. A summary file is ours when its set's JSON record is; an error file
    when it carries our header and source line."""
    match = SUMMARY_NAME.match(name)
    if match:
        record = folder.read_record(f"{match['stem']}{SUMMARY_INFIX}json")
        return "summary" if record is not None and "source_key" in record else None
    if name.endswith(ERROR_SUFFIX):
        return "error" if folder.error_owner(name) is not None else None
    return None
