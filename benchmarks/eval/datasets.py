"""Converters from public meeting/dialogue summarization sets to the bench's JSONL.

QMSum (Zhong et al., 2021): one JSON file per meeting, {"meeting_transcripts": [{speaker,
content}], "general_query_list": [{query, answer}], "specific_query_list": [{query, answer,
relevant_text_span: [["start", "end"], ...]}]}.
  - default: one record per meeting, the general query's answer ("Summarize the whole meeting")
    as the reference;
  - --specific: one record per specific query, the transcript being the turns of its
    relevant_text_span (inclusive turn indices), the query's answer as the reference. These
    segments are the query-focused summaries Tiny Titans evaluates on.
DialogSum (Chen et al., 2021): JSONL of {fname, dialogue, summary (or summary1..3), topic}.

Transcripts are written inline as `Speaker: text` lines (the reader cleans QMSum's {vocalsound}
markers), so a prepared file is self-contained.
"""

from __future__ import annotations

import json
from pathlib import Path

from sumctl.benchmarks.eval.files import write_public_text
from sumctl.runtime.errors import InputError
from sumctl.runtime.jsonout import strict_dumps, strict_loads

QMSUM_SPLITS = ("train", "val", "test")


def qmsum_files(root: str | Path, split: str | None = None) -> list[Path]:
    """The meeting files under a QMSum folder: the folder itself, or its split subfolders."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (pass QMSum's data folder, the one holding "
                         "train/ val/ test/, or one split folder)")
    if split is not None:
        folder = root / split
        if not folder.is_dir():
            present = [s for s in QMSUM_SPLITS if (root / s).is_dir()]
            raise InputError(f"{folder}: no {split!r} split here (found: "
                             f"{', '.join(present) or 'none'})")
        files = sorted(folder.glob("*.json"))
    else:
        files = sorted(root.glob("*.json"))
        if not files:
            files = sorted(p for s in QMSUM_SPLITS for p in (root / s).glob("*.json"))
    if not files:
        raise InputError(f"{root}: no QMSum meeting files (*.json) found")
    return files


def prepare_qmsum(root: str | Path, *, specific: bool = False, split: str | None = None) -> list[dict]:
    records = []
    for file in qmsum_files(root, split):
        meeting = _load_meeting(file)
        turns = meeting["meeting_transcripts"]
        source = f"{file.parent.name}/{file.name}"
        if not specific:
            general = meeting.get("general_query_list") or []
            if not general:
                continue
            query = general[0]
            records.append({"id": file.stem, "transcript": _render(turns),
                            "reference": _answer(query, file),
                            "meta": {"dataset": "qmsum", "source": source,
                                     "query": query.get("query", "")}})
            continue
        for i, query in enumerate(meeting.get("specific_query_list") or []):
            spans = _spans(query.get("relevant_text_span"), len(turns), file, i)
            segment = [turn for start, end in spans for turn in turns[start:end + 1]]
            if not segment:
                continue
            # The question at the top level: `sumctl bench` and `sumctl train` ask it.
            records.append({"id": f"{file.stem}/q{i}", "transcript": _render(segment),
                            "query": query.get("query", ""),
                            "reference": _answer(query, file),
                            "meta": {"dataset": "qmsum", "source": source,
                                     "query": query.get("query", ""),
                                     "span": [[s, e] for s, e in spans]}})
    if not records:
        raise InputError(f"{root}: no {'specific' if specific else 'general'} queries with answers found")
    return records


def _load_meeting(file: Path) -> dict:
    try:
        meeting = strict_loads(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, NaN or 1e999
        raise InputError(f"{file}: not a QMSum meeting file ({e})") from None
    if not isinstance(meeting, dict) or not isinstance(meeting.get("meeting_transcripts"), list):
        raise InputError(f"{file}: not a QMSum meeting file (no `meeting_transcripts` list)")
    return meeting


def _render(turns: list[dict]) -> str:
    lines = []
    for turn in turns:
        text = " ".join(str(turn.get("content", "")).split())
        if not text:
            continue
        speaker = " ".join(str(turn.get("speaker") or "").replace(":", " ").split())
        lines.append(f"{speaker}: {text}" if speaker else text)
    return "\n".join(lines)


def _answer(query: dict, file: Path) -> str:
    answer = query.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise InputError(f"{file}: query {query.get('query', '?')!r} has no answer")
    return " ".join(answer.split())


def _spans(raw, n_turns: int, file: Path, index: int) -> list[tuple[int, int]]:
    try:
        spans = [(int(s), int(e)) for s, e in raw]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{file}: specific query {index} has a malformed relevant_text_span "
                         f"{raw!r} (expected [[\"start\", \"end\"], ...])") from None
    # QMSum spans are inclusive turn indices; clamp the rare one that runs past the end.
    return [(max(0, s), min(e, n_turns - 1)) for s, e in spans if s <= e]


def prepare_dialogsum(file: str | Path) -> list[dict]:
    file = Path(file)
    if not file.is_file():
        raise InputError(f"{file}: no such file (pass a DialogSum .jsonl, e.g. dialogsum.dev.jsonl)")
    records = []
    for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = strict_loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{file}:{lineno}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # NaN, Infinity, 1e999, nesting
            raise InputError(f"{file}:{lineno}: not valid JSON ({e or 'nested too deeply'})") from None
        reference = item.get("summary") or item.get("summary1") if isinstance(item, dict) else None
        if not isinstance(reference, str) or not isinstance(item.get("dialogue"), str):
            raise InputError(f"{file}:{lineno}: not a DialogSum record (needs `dialogue` and "
                             "`summary`)")
        meta = {"dataset": "dialogsum"}
        if item.get("topic"):
            meta["topic"] = item["topic"]
        extra_refs = [item[k] for k in ("summary2", "summary3") if item.get(k)]
        if extra_refs:
            meta["other_references"] = extra_refs
        records.append({"id": str(item.get("fname") or f"line-{lineno}"),
                        "transcript": item["dialogue"], "reference": reference.strip(),
                        "meta": meta})
    if not records:
        raise InputError(f"{file}: no DialogSum records")
    return records


def write_jsonl(records: list[dict], out: str | Path, *, force: bool = False) -> Path:
    """Write records atomically. An existing file is kept unless `force`: it may be hand-edited."""
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (choose another --out, or pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_public_text(out, "".join(strict_dumps(r, ensure_ascii=False) + "\n" for r in records))
    return out
