"""Evaluation records: the JSONL files `sumctl bench` and `sumctl train` read.

One record a line:

    {"id": "dev_0", "transcript": "#Person1#: Hello ...", "reference": "Person2 has ..."}

`transcript` is the text itself, or the path (relative to the JSONL file) of a transcript in any
format the reader knows. Other keys (`meta`, `query`, `reduce_input`...) are kept in `extra`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sumctl.runtime.errors import InputError
from sumctl.runtime.jsonout import strict_dumps, strict_loads
from sumctl.runtime.transcript import Transcript, parse_text, read_transcript

REQUIRED_FIELDS = ("id", "transcript", "reference")
# A transcript string that ends like a file name is taken as a path; one that does not exist is
# an error rather than a one-line "transcript" that would be summarized by mistake.
_PATH_SUFFIXES = (".txt", ".vtt", ".srt", ".json", ".md", ".text")


@dataclass
class EvalRecord:
    id: str
    transcript: Transcript
    reference: str
    line: int
    transcript_path: str | None = None  # as given in the JSONL, when it was a path
    extra: dict = field(default_factory=dict)

    @property
    def query(self) -> str | None:
        """The record's question, for a query-focused summary (QMSum's specific queries)."""
        query = self.extra.get("query")
        return query if isinstance(query, str) and query.strip() else None


@dataclass
class Dataset:
    path: Path
    records: list[EvalRecord]
    file_sha256: str
    total_records: int  # in the file, before --limit

    @property
    def sha256(self) -> str:
        """A hash of exactly what was evaluated: each record's id, transcript bytes and reference.

        It follows the transcript files a record points to, and ignores records cut by --limit,
        so two runs with the same hash scored the same pairs."""
        digest = hashlib.sha256()
        for r in self.records:
            digest.update(strict_dumps([r.id, r.transcript.sha256, r.reference]).encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()

    def ids(self) -> list[str]:
        return [r.id for r in self.records]


def read_jsonl(path: str | Path, *, expected: str, what: str = "file",
               make_hint: str = "") -> tuple[bytes, Iterator[tuple[str, dict]]]:
    """The one JSONL reader of the benchmarks and of `sumctl train`: the file's bytes, and
    ("file:line", object) for each non-blank line. Every problem is one InputError naming the
    file and the line; `expected` says what a line holds (e.g. '{"id", "summary"}'), and
    `make_hint` how to make such a file when there is none."""
    path = Path(path)
    hint = f" ({make_hint})" if make_hint else f" (expected one {expected} object a line)"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}{hint}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a JSONL file{hint}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: invalid UTF-8 at byte {e.start} (save the file as UTF-8)") from None

    def objects() -> Iterator[tuple[str, dict]]:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = strict_loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                raise InputError(f"{where}: not valid JSON ({detail}); each line must be one "
                                 f"{expected} object") from None
            except ValueError as e:  # NaN, Infinity, 1e999, an integer of thousands of digits
                raise InputError(f"{where}: {e}; write a finite number (or leave the field "
                                 "out)") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object with {expected}, got "
                                 f"{type(obj).__name__}")
            yield where, obj
    return raw, objects()


def check_unique(seen: dict[str, str], rid: str, where: str) -> None:
    """Ids must be unique within a file: refuse the second, naming both lines."""
    if rid in seen:
        raise InputError(f"{where}: id {rid!r} repeats line {seen[rid].rpartition(':')[2]} "
                         "(ids must be unique)")
    seen[rid] = where


def load_dataset(path: str | Path, *, limit: int | None = None) -> Dataset:
    """Read and check an evaluation JSONL. Every problem names the file, the line and the fix."""
    path = Path(path)
    raw, objects = read_jsonl(path, expected=", ".join(REQUIRED_FIELDS), what="data file",
                              make_hint="make one with `sumctl bench prepare`")
    records: list[EvalRecord] = []
    seen: dict[str, str] = {}
    total = 0
    for where, obj in objects:
        total += 1
        if limit is not None and len(records) >= limit:
            continue  # still count, so the report can say "5 of 500"
        record = parse_record(obj, where, path.parent)
        check_unique(seen, record.id, where)
        records.append(record)
    if not records:
        raise InputError(f"{path}: no records (expected one JSON object a line with "
                         f"{', '.join(REQUIRED_FIELDS)})")
    return Dataset(path=path, records=records, file_sha256=hashlib.sha256(raw).hexdigest(),
                   total_records=total)


def parse_record(obj: dict, where: str, base: Path) -> EvalRecord:
    """One evaluation record from its JSON object (`where` is "file:line"; a transcript given as
    a path is relative to `base`)."""
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise InputError(f"{where}: missing field {', '.join(repr(m) for m in missing)} "
                         f"(each line needs {', '.join(REQUIRED_FIELDS)})")
    rid = obj["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise InputError(f"{where}: 'id' must be a non-empty string or number")
    rid = str(rid)
    reference = obj["reference"]
    if not isinstance(reference, str) or not reference.strip():
        raise InputError(f"{where}: 'reference' must be a non-empty string (the gold summary)")
    value = obj["transcript"]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: 'transcript' must be the transcript text or a file path")
    transcript_path = None
    candidate = _as_path(base, value)
    if candidate is not None:
        transcript_path = value
        if not candidate.is_file():
            raise InputError(f"{where}: transcript file {value!r} not found (paths are relative "
                             f"to {base}; or give the transcript text itself)")
        transcript = read_transcript(candidate)
    else:
        transcript = parse_text(value, name=f"{where} (id {rid})")
        transcript.sha256 = hashlib.sha256(value.encode("utf-8")).hexdigest()
    extra = {k: v for k, v in obj.items() if k not in REQUIRED_FIELDS}
    lineno = int(where.rpartition(":")[2])
    return EvalRecord(rid, transcript, reference.strip(), lineno, transcript_path, extra)


def _as_path(base: Path, value: str) -> Path | None:
    """The file a transcript string names, or None if the string is the transcript itself."""
    if "\n" in value or len(value) > 1024:
        return None
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        if candidate.is_file():
            return candidate
    except OSError:  # e.g. a name too long for the file system: it is text
        return None
    return candidate if value.strip().lower().endswith(_PATH_SUFFIXES) else None
