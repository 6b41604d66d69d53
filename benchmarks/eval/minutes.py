"""Scoring minutes against hand labels (tests/data/minutes/, described in its README.md).

An extracted item matches a labelled one of the same kind when their evidence turns overlap
(one turn of slack either side: a label may cite the request, the extractor its answer) and
their content words agree (rapidfuzz token_set_ratio >= MATCH_TEXT); each label is matched at
most once, best text first. From the matches:
- precision and recall of decisions and of action items;
- owner accuracy: matched action items whose owner is the label's (a name in its `owners` or
  `owner_aliases` counts; null matches null);
- invented owners: owners that neither speak in nor are named in the item's evidence turns;
- invented dates: due dates that no date said in the evidence turns resolves to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz

from sumctl.runtime.minutes.dates import DATE_PHRASE, resolve
from sumctl.runtime.minutes.evidence import content_words
from sumctl.runtime.transcript import Transcript, read_transcript

MATCH_TEXT = 50
SLACK = 1


@dataclass
class LabelledMeeting:
    name: str
    path: Path
    date: str | None
    labels: dict
    source: str  # "own" (written for the set) or "qmsum"

    def transcript(self) -> Transcript:
        return read_transcript(self.path)


def load_labelled(folder: Path, qmsum_dir: Path | None) -> list[LabelledMeeting]:
    """Every `<name>.labels.json` in `folder`; QMSum meetings are read from `qmsum_dir`
    (../shared/data/qmsum), and left out when it is None or lacks them."""
    meetings = []
    for labels_file in sorted(Path(folder).glob("*.labels.json")):
        labels = json.loads(labels_file.read_text(encoding="utf-8"))
        if labels.get("qmsum"):
            if qmsum_dir is None or not (Path(qmsum_dir) / labels["qmsum"]).is_file():
                continue
            path, source = Path(qmsum_dir) / labels["qmsum"], "qmsum"
        else:
            path, source = labels_file.parent / labels["transcript"], "own"
        meetings.append(LabelledMeeting(labels["name"], path, labels.get("date"), labels, source))
    return meetings


@dataclass
class Tally:
    extracted: int = 0
    labelled: int = 0
    matched: int = 0
    owner_right: int = 0
    invented_owners: int = 0
    invented_dates: int = 0
    misses: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        for name in ("extracted", "labelled", "matched", "owner_right", "invented_owners",
                     "invented_dates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misses += other.misses
        self.extras += other.extras

    @property
    def precision(self) -> float | None:
        return self.matched / self.extracted if self.extracted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.labelled if self.labelled else None

    @property
    def owner_accuracy(self) -> float | None:
        return self.owner_right / self.matched if self.matched else None


def score(record: dict, labels: dict, transcript: Transcript, meeting_date: str | None) -> dict[str, Tally]:
    """Tallies for "decisions" and "action_items" of one meeting's minutes (a record's dict)."""
    result = {}
    for kind, text_key in (("decisions", "text"), ("action_items", "task")):
        items, gold = record.get(kind, []), labels.get(kind, [])
        tally = Tally(extracted=len(items), labelled=len(gold))
        pairs = []
        for i, item in enumerate(items):
            ev = item["evidence"]
            for j, label in enumerate(gold):
                first, last = label["turns"]
                if ev["first_turn"] - SLACK <= last and first - SLACK <= ev["last_turn"]:
                    similarity = fuzz.token_set_ratio(" ".join(content_words(item[text_key])),
                                                      " ".join(content_words(label.get("task") or label["text"])))
                    if similarity >= MATCH_TEXT:
                        pairs.append((similarity, i, j))
        used_items, used_labels = set(), set()
        for _, i, j in sorted(pairs, reverse=True):
            if i in used_items or j in used_labels:
                continue
            used_items.add(i)
            used_labels.add(j)
            tally.matched += 1
            if kind == "action_items" and _same_owner(items[i]["owner"], gold[j]):
                tally.owner_right += 1
        tally.misses = [g.get("task") or g["text"] for j, g in enumerate(gold) if j not in used_labels]
        tally.extras = [it[text_key] for i, it in enumerate(items) if i not in used_items]
        if kind == "action_items":
            for item in items:
                evidence = transcript.turns[item["evidence"]["first_turn"]:item["evidence"]["last_turn"] + 1]
                text = " ".join(t.text for t in evidence)
                speakers = {t.speaker for t in evidence if t.speaker}
                owner = item["owner"]
                if owner and owner not in speakers and not re.search(rf"\b{re.escape(owner)}\b", text, re.I) \
                        and not _role_named(owner, text):
                    tally.invented_owners += 1
                if item["due"] and item["due"] not in {resolve(m.group(0), meeting_date)
                                                       for m in DATE_PHRASE.finditer(text)}:
                    tally.invented_dates += 1
        result[kind] = tally
    return result


def _same_owner(owner: str | None, label: dict) -> bool:
    names = {n.lower() for n in [label.get("owner"), *label.get("owners", []),
                                 *label.get("owner_aliases", [])] if n}
    if owner is None:
        return not names
    return owner.lower() in names


def _role_named(owner: str, text: str) -> bool:
    """AMI's speakers are roles ("Industrial Designer"), named in speech without the capitals
    or the "designer"/"expert" ending."""
    role = re.sub(r"\s+(?:designer|expert|manager)$", "", owner, flags=re.I)
    return re.search(rf"\b{re.escape(role)}\b", text, re.I) is not None
