"""Transcript files -> speaker turns.

Reads plain text (with or without `Speaker:` prefixes), WebVTT (Zoom, Teams), SRT, JSON (a list
of turns, or QMSum's {"meeting_transcripts": [...]}) and DialogSum's `#Person1#:` lines. The
format comes from the extension, then the content. Every problem is an InputError whose message
names the file and what to do about it.

What a file may hold, and what becomes of it (the rules at this boundary, for every format):
- Bytes: UTF-8 (with or without its BOM), or UTF-16 or UTF-32 with their BOM (LE or BE).
  Anything else, invalid or overlong UTF-8 included, is refused, as is a NUL anywhere in the
  decoded text (a binary file, or UTF-16/32 without its BOM).
- Strings (turn text, speakers, a title; the question of --query and `ask` too, through
  clean_string): a lone surrogate, which JSON's `\ud83d` escape can make and no encoder
  writes, becomes U+FFFD; a control character (C0 but tab and newline, DEL, C1) becomes a
  space. So every string past this point encodes as UTF-8 and prints on one line.
- Numbers (cue times, JSON `start`/`end`): finite seconds of at most MAX_SECONDS either way,
  else the file is refused naming the turn or cue; NaN and infinity never reach a record.
- The file's name is shown as fsutil.display_name gives it; it is opened as the OS gave it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from sumctl.runtime.errors import InputError
from sumctl.runtime.fsutil import display_name

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_BYTES_ENV = "SUMCTL_MAX_BYTES"
FORMATS = ("text", "vtt", "srt", "json", "dialogsum")
# About 31,700 years: far past any meeting, and small enough that an end minus a start is finite.
MAX_SECONDS = 1e12
_UNENCODABLE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_string(text: str) -> str:
    """`text` as every string from a transcript or the command line is kept: a lone surrogate
    (a str holds a surrogate only unpaired) becomes U+FFFD, a control character a space."""
    return _CONTROL.sub(" ", _UNENCODABLE.sub("\ufffd", text))


@dataclass(frozen=True)
class Turn:
    speaker: str | None
    text: str
    start: float | None = None
    end: float | None = None

    def render(self) -> str:
        return f"{self.speaker}: {self.text}" if self.speaker else self.text


@dataclass
class Transcript:
    turns: list[Turn]
    source: str
    format: str
    sha256: str = ""  # of the bytes read, so outputs can say exactly what was summarized
    title: str | None = None  # when the file says it (a JSON transcript's `title`)
    date: str | None = None  # ISO date of the meeting: a JSON `date`, or one in the file's name

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns if t.speaker})

    def text(self) -> str:
        return "\n".join(t.render() for t in self.turns)

    @property
    def participants(self) -> list[str]:
        """The speakers in the order they first speak."""
        return list(dict.fromkeys(t.speaker for t in self.turns if t.speaker))

    @property
    def duration_s(self) -> float | None:
        starts = [t.start for t in self.turns if t.start is not None]
        ends = [t.end if t.end is not None else t.start for t in self.turns if t.start is not None]
        return round(max(ends) - min(starts), 3) if starts else None

    def word_count(self) -> int:
        return sum(len(t.text.split()) for t in self.turns)

    def to_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "sha256": self.sha256,
                "turns": [asdict(t) for t in self.turns]}


def max_bytes_default() -> int:
    raw = os.environ.get(MAX_BYTES_ENV)
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{MAX_BYTES_ENV}={raw!r} is not a whole number of bytes") from None


def read_transcript(path: str | Path, *, fmt: str | None = None, max_bytes: int | None = None) -> Transcript:
    """Read and parse one transcript file. The file is opened read-only and never changed."""
    path = Path(path)
    name = display_name(path)
    cap = max_bytes_default() if max_bytes is None else max_bytes
    try:
        if not path.is_file():
            raise InputError(f"{name}: not a file (pass the path of a transcript)")
        size = path.stat().st_size
        if size > cap:
            raise InputError(
                f"{name}: {size:,} bytes is over the {cap:,}-byte cap "
                f"(raise it with --max-bytes or {MAX_BYTES_ENV})"
            )
        data = path.read_bytes()
    except PermissionError:
        raise InputError(f"{name}: permission denied (check the file's permissions)") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror})") from None
    return parse_bytes(data, name=name, fmt=fmt or format_from_extension(path), max_bytes=cap)


_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")


def date_in_name(name: str) -> str | None:
    """The ISO date in a file name such as `2026-10-07 standup.vtt`, as recorders name files."""
    m = _NAME_DATE.search(name)
    return iso_date(m.group(0)) if m else None


def iso_date(value) -> str | None:
    """`value` as an ISO date if it is one (or an ISO date-time), else None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        return None


def parse_bytes(data: bytes, *, name: str = "<stdin>", fmt: str | None = None,
                max_bytes: int | None = None) -> Transcript:
    name = display_name(name)  # whoever calls, a name that is not UTF-8 is shown, not raised on
    cap = max_bytes_default() if max_bytes is None else max_bytes
    if len(data) > cap:
        raise InputError(f"{name}: {len(data):,} bytes is over the {cap:,}-byte cap "
                         f"(raise it with --max-bytes or {MAX_BYTES_ENV})")
    transcript = parse_text(decode(data, name), name=name, fmt=fmt)
    transcript.sha256 = hashlib.sha256(data).hexdigest()
    # Whoever read the bytes (summarize, the watcher, a batch worker), the name says the same.
    transcript.date = transcript.date or date_in_name(Path(name).name)
    return transcript


def decode(data: bytes, name: str) -> str:
    if not data.strip():
        raise InputError(f"{name}: the file is empty (nothing to summarize)")
    # UTF-32LE's BOM begins with UTF-16LE's: it must be looked for first.
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                raise InputError(f"{name}: broken {encoding.upper()} text "
                                 "(save the file as UTF-8)") from None
            break
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            if b"\x00" in data:
                raise InputError(f"{name}: looks like a binary file, not a transcript "
                                 "(NUL bytes found)") from None
            raise InputError(f"{name}: invalid UTF-8 at byte {e.start} "
                             "(save the file as UTF-8)") from None
    if "\x00" in text:
        raise InputError(f"{name}: looks like a binary file, not a transcript (NUL bytes found; "
                         "UTF-16 and UTF-32 need their byte order mark)")
    return text


def format_from_extension(path: Path) -> str | None:
    return {".vtt": "vtt", ".srt": "srt", ".json": "json"}.get(path.suffix.lower())


def sniff_format(text: str) -> str:
    head = text.lstrip()
    if head.startswith("WEBVTT"):
        return "vtt"
    # "[00:01:02] Ann: ..." is a timestamped text line, not a JSON array.
    # ... nor is "{vocalsound} So..." a JSON object.
    if re.match(r"\{\s*(\"|\}|$)", head) or (head[:1] == "[" and not re.match(r"\[\(?\d{1,2}:\d", head)):
        return "json"
    lines = [ln.strip() for ln in head.splitlines()[:3]]
    if len(lines) >= 2 and lines[0].isdigit() and "-->" in lines[1]:
        return "srt"
    if re.search(r"^#[^#\s]+#\s*:", head, re.M):
        return "dialogsum"
    return "text"


def parse_text(text: str, *, name: str = "<stdin>", fmt: str | None = None) -> Transcript:
    fmt = fmt or sniff_format(text)
    parser = {
        "text": _parse_plain, "vtt": _parse_vtt, "srt": _parse_srt,
        "json": _parse_json, "dialogsum": _parse_dialogsum,
    }.get(fmt)
    if parser is None:
        raise InputError(f"{name}: unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    parsed = parser(text, name)
    turns, meta = parsed if isinstance(parsed, tuple) else (parsed, {})
    turns = _normalize_turns(turns, merge_same_speaker=fmt in ("vtt", "srt"))
    if not turns:
        raise InputError(f"{name}: no speech found after removing markers and empty turns")
    title = meta.get("title")
    return Transcript(turns=turns, source=name, format=fmt,
                      title=" ".join(clean_string(title).split())[:200] or None
                      if isinstance(title, str) else None,
                      date=iso_date(meta.get("date")))


# --- cleaning -----------------------------------------------------------------------------

# QMSum/AMI/ICSI annotations: {vocalsound}, {disfmarker}, {gap}, {pause}, {nonvocalsound}, ...
_MARKER = re.compile(r"\{\s*[a-z_]+\s*\}", re.I)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")


def normalize_markup(text: str) -> str:
    """A turn's text without transcript markup ({vocalsound}, <v> tags) and with its spacing
    fixed; every word said stays (cleaning.clean_text is what drops fillers)."""
    text = _MARKER.sub(" ", text)
    text = _TAG.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _normalize_turns(turns: list[Turn], *, merge_same_speaker: bool) -> list[Turn]:
    # Caption formats cut one speaker's speech into many short cues: their texts are gathered
    # and joined once per turn, since joining as they come copies the growing turn once per cue
    # (quadratic: a one-speaker caption file of 100,000 cues took minutes).
    runs: list[tuple[Turn, list[str]]] = []  # a turn's first cue, its texts, and its last end
    ends: list[float | None] = []
    for turn in turns:
        text = normalize_markup(clean_string(turn.text))
        # A turn of only markers or punctuation ("{vocalsound} .") carries nothing.
        if not re.search(r"\w", text):
            continue
        speaker = normalize_markup(clean_string(turn.speaker)) if turn.speaker else None
        speaker = speaker or None
        if merge_same_speaker and runs and runs[-1][0].speaker == speaker:
            runs[-1][1].append(text)
            ends[-1] = turn.end if turn.end is not None else ends[-1]
        else:
            runs.append((Turn(speaker, text, turn.start, turn.end), [text]))
            ends.append(turn.end)
    return [Turn(first.speaker, " ".join(texts), first.start, end)
            for (first, texts), end in zip(runs, ends)]


# --- plain text and DialogSum ---------------------------------------------------------------

_TIMESTAMP_PREFIX = re.compile(r"^\[?\(?(\d{1,2}:)?\d{1,2}:\d{2}(\.\d+)?\]?\)?\s*[-–]?\s*")
_SPEAKER_LINE = re.compile(r"^(?P<speaker>[^\s:#][^:]{0,40}?)\s*:\s+(?P<text>\S.*)$")


def _parse_plain(text: str, name: str) -> list[Turn]:
    lines = [ln.strip() for ln in text.splitlines()]
    content = [_TIMESTAMP_PREFIX.sub("", ln) for ln in lines if ln]
    matches = [_SPEAKER_LINE.match(ln) for ln in content]
    labelled = [m for m in matches if m and _looks_like_speaker(m["speaker"])]
    if content and len(labelled) * 2 >= len(content):
        return _turns_from_labelled(content)
    # No speakers: a paragraph (block of lines between blank lines) is a turn.
    turns, block = [], []
    for ln in lines + [""]:
        if ln:
            block.append(ln)
        elif block:
            turns.append(Turn(None, " ".join(block)))
            block = []
    return turns


def _looks_like_speaker(label: str) -> bool:
    # "Note: the budget is..." or "http://..." are not speakers; names are short and few words.
    return len(label.split()) <= 5 and not label.lower().startswith(("http", "www"))


def _turns_from_labelled(lines: list[str]) -> list[Turn]:
    turns: list[Turn] = []
    for ln in lines:
        m = _SPEAKER_LINE.match(ln)
        if m and _looks_like_speaker(m["speaker"]):
            turns.append(Turn(m["speaker"].strip(), m["text"]))
        elif turns:  # a wrapped line continues the turn above it
            last = turns[-1]
            turns[-1] = Turn(last.speaker, f"{last.text} {ln}")
        else:
            turns.append(Turn(None, ln))
    return turns


_DIALOGSUM_LINE = re.compile(r"^#(?P<speaker>[^#\s]+)#\s*:\s*(?P<text>.*)$")


def _parse_dialogsum(text: str, name: str) -> list[Turn]:
    turns: list[Turn] = []
    for ln in (ln.strip() for ln in text.splitlines()):
        if not ln:
            continue
        m = _DIALOGSUM_LINE.match(ln)
        if m:
            turns.append(Turn(m["speaker"], m["text"]))
        elif turns:
            turns[-1] = Turn(turns[-1].speaker, f"{turns[-1].text} {ln}")
        else:
            raise InputError(f"{name}: DialogSum text must start with a `#Person1#:` line")
    return turns


# --- captions: WebVTT and SRT ---------------------------------------------------------------

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_CUE_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>")


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    # Whole numbers first: a cue's hours can have any number of digits.
    whole = int(h or 0) * 3600 + int(m) * 60 + int(s)
    return whole + int(frac.ljust(3, "0")) / 1000 if whole <= MAX_SECONDS else math.inf


def _parse_timing(line: str, name: str = "<stdin>") -> tuple[float, float] | None:
    m = _CUE_TIMING.match(line)
    if not m:
        return None
    g = m.groups()
    try:
        times = _seconds(*g[:4]), _seconds(*g[4:])
    except ValueError:  # more digits than Python converts to an int
        times = math.inf, math.inf
    for t in times:
        finite_seconds(t, name, f"cue {line.strip()[:60]!r}")
    return times


def finite_seconds(value: float, name: str, where: str) -> float:
    """`value` if it is a time a file may give (finite, at most MAX_SECONDS either way), else an
    InputError naming the file and where in it."""
    if not math.isfinite(value) or abs(value) > MAX_SECONDS:
        raise InputError(f"{name}: {where} has a time of {value!r} seconds, which is not a finite "
                         f"number up to {MAX_SECONDS:.0e} (fix the time in the file)")
    return value


def _blocks(text: str) -> list[list[str]]:
    blocks, block = [], []
    for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if ln.strip():
            block.append(ln.rstrip())
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    return blocks


def _cue_turns(payload: list[str], start: float, end: float) -> list[Turn]:
    turns = []
    for line in payload:
        voice = _VOICE.search(line)
        if voice:
            speaker, body = voice.group(1).strip(), _VOICE.sub("", line)
        else:
            m = _SPEAKER_LINE.match(_TAG.sub("", line).strip())
            if m and _looks_like_speaker(m["speaker"]):
                speaker, body = m["speaker"].strip(), m["text"]
            elif turns:  # a second line of the same cue
                last = turns[-1]
                turns[-1] = Turn(last.speaker, f"{last.text} {line}", start, end)
                continue
            else:
                speaker, body = None, line
        turns.append(Turn(speaker, body, start, end))
    return turns


def _parse_vtt(text: str, name: str) -> list[Turn]:
    blocks = _blocks(text.lstrip("\ufeff"))
    if not blocks or not blocks[0][0].startswith("WEBVTT"):
        raise InputError(f"{name}: malformed WebVTT: the first line must be `WEBVTT`")
    turns: list[Turn] = []
    for block in blocks[1:]:
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_at = 0 if "-->" in block[0] else 1
        if timing_at >= len(block) or (timing := _parse_timing(block[timing_at], name)) is None:
            raise InputError(f"{name}: malformed WebVTT cue near {block[0][:60]!r} "
                             "(expected `00:00:01.000 --> 00:00:04.000`)")
        turns.extend(_cue_turns(block[timing_at + 1:], *timing))
    if not turns:
        raise InputError(f"{name}: malformed WebVTT: no cues found")
    return turns


def _parse_srt(text: str, name: str) -> list[Turn]:
    turns: list[Turn] = []
    for block in _blocks(text.lstrip("\ufeff")):
        timing_at = 1 if block[0].strip().isdigit() else 0
        if timing_at >= len(block) or (timing := _parse_timing(block[timing_at], name)) is None:
            raise InputError(f"{name}: malformed SRT block near {block[0][:60]!r} "
                             "(expected a number, then `00:00:01,000 --> 00:00:04,000`)")
        turns.extend(_cue_turns(block[timing_at + 1:], *timing))
    if not turns:
        raise InputError(f"{name}: malformed SRT: no subtitle blocks found")
    return turns


# --- JSON -----------------------------------------------------------------------------------

def _parse_json(text: str, name: str) -> tuple[list[Turn], dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{name}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply to be a transcript (a list of turns "
                         "needs two levels)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise InputError(f"{name}: JSON that is not a transcript ({e})") from None
    meta = data if isinstance(data, dict) else {}  # a title and a date, where the file has them
    if isinstance(data, dict):
        for key in ("meeting_transcripts", "turns", "transcript", "utterances", "segments"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise InputError(f"{name}: JSON object has no list of turns "
                             "(expected a list, or a `meeting_transcripts` or `turns` key)")
    if not isinstance(data, list):
        raise InputError(f"{name}: JSON must be a list of turns, not {type(data).__name__}")
    turns = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"{name}: turn {i} is {type(item).__name__}, expected an object "
                             "with `speaker` and `text` (or `content`)")
        body = item.get("text", item.get("content"))
        if not isinstance(body, str):
            raise InputError(f"{name}: turn {i} has no `text` or `content` string")
        speaker = item.get("speaker")
        if not isinstance(speaker, (str, int, float, type(None))) or isinstance(speaker, bool):
            raise InputError(f"{name}: turn {i} has a `speaker` that is not a name")
        turns.append(Turn(str(speaker) if speaker not in (None, "") else None, body,
                          _number(item.get("start"), name, i), _number(item.get("end"), name, i)))
    return turns, meta


def _number(value, name: str, i: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return finite_seconds(float(value), name, f"turn {i}")
        except OverflowError:
            raise InputError(f"{name}: turn {i} has a time of {len(str(value))} digits "
                             "(times are seconds)") from None
    if isinstance(value, str):
        timing = _parse_timing(f"{value} --> {value}", name) if ":" in value else None
        if timing:
            return timing[0]
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            return finite_seconds(seconds, name, f"turn {i}")
    raise InputError(f"{name}: turn {i} has a start/end time {value!r} that is not a number of seconds")
