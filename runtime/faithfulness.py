"""Does the meeting say what the summary says? Each sentence of a summary, checked against the
turns it could have come from, without a model.

A small model writes fluent sentences that the meeting does not bear out: an agreement that was
a disagreement, colours nobody proposed, a candidate "from the platform team" when the platform
team supplies the interviewer, an instruction injected into the transcript repeated as a
decision with dates nobody said. The minutes' items pass evidence checks (minutes/evidence.py);
here a summary's sentences pass the same kind:

- its evidence is the few turns that match it best (BM25) and a turn either side of each;
- enough of its content words are in the evidence (evidence.support, fuzzily), with a lower bar
  than the minutes' items, since a summary paraphrases;
- every name it uses (a capitalised word inside the sentence: a person, a role such as
  "Industrial Designer", a team) is in the evidence or is a speaker of the meeting;
- every number, weekday, month and ISO date is in the evidence ("14th" is 14, "ten" is 10), and
  a counted quantity with its unit ("ten minutes", "15 percent"), not only its count;
- a negation is matched by one in the evidence, and "X from the Y team" by the same X there;
- an agreement or a decision is not claimed where its evidence only disagrees;
- what it says a speaker said, thought or proposed ("the industrial designer suggested X") is
  in that speaker's own turns, or at least no other speaker's turns in the evidence carry X
  clearly better: a small model often gives one speaker's proposal to another.

Turns that address the summarizer itself ("ignore previous instructions ...") are no evidence of
anything the meeting did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from rapidfuzz import fuzz

from sumctl.runtime.minutes.cues import sentences
from sumctl.runtime.minutes.evidence import STOPWORDS, WORD_MATCH, content_words, support
from sumctl.runtime.lexical import Bm25Index
from sumctl.runtime.transcript import Turn

# Measured on QMSum train: reference answers (human paraphrase of their segments) against the
# evidence found for each sentence. See check_summary's docstring for the numbers.
PARAPHRASE_SUPPORT = 0.35
EVIDENCE_TURNS = 5  # best-matching turns per sentence
EVIDENCE_REACH = 1  # turns either side of each that join its evidence

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
                      "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
                      "million": "1000000", "billion": "1000000000", "dozen": "12", "half": "0.5"})
_COMPOUND = re.compile(r"\b(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|one|two|three|four|five|"
                       r"six|seven|eight|nine|ten)(\s+point\s+|[\s-]+)(one|two|three|four|five|six|"
                       r"seven|eight|nine)\b", re.I)
# "One" is a pronoun far more often than a count ("one of the designs").
_CHECKED_NUMBER_WORDS = set(_NUMBER_WORDS) - {"one", "zero", "half"}
_NUMBER_WORD = "|".join(sorted(_CHECKED_NUMBER_WORDS, key=len, reverse=True))  # longest first
_NUMBER = re.compile(r"\b\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th|s)?\b|\b(?:" + _NUMBER_WORD + r")\b", re.I)
# A count of something measured: the count alone may be in the evidence ("one run in ten") while
# the quantity is not ("ten minutes").
_QUANTITY = re.compile(r"\b(?P<count>\d[\d,]*(?:\.\d+)?|" + _NUMBER_WORD + r")[\s-]+"
                       r"(?P<unit>minute|hour|day|week|month|year|percent|per cent|euro|dollar|pound|cent)s?\b",
                       re.I)
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CALENDAR = re.compile(r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|"
                       r"february|march|april|june|july|august|september|october|november|"
                       r"december)\b", re.I)
_NEGATION = re.compile(r"\b(?:not|never|no|none|nothing|nobody|neither|nor|without|cannot)\b|n't\b",
                       re.I)
# What a speaker says instead of "not": "everything except the export" is "not the export".
_EXCEPTION = re.compile(r"\b(?:except|unless|instead|rather than|fail(?:s|ed|ing)?|lack(?:s|ed|ing)?|"
                        r"missing|only|against|refuse[sd]?|reject(?:s|ed)?|stop(?:s|ped)?|hardly|barely|"
                        r"less|fewer|too (?:few|little)|insufficient\w*|inadequate\w*|un[a-z]{4,})\b", re.I)
# Verbs of a claim: "decision" alone is as often a thing discussed ("decision nodes").
_CLAIMS_AGREEMENT = re.compile(r"\b(?:agree[sd]?|agreement|decided|approved|consensus|accepted|settled|"
                               r"(?:made|reached) (?:a|the) decision)\b", re.I)
_DISAGREES = re.compile(r"\b(?:disagree[sd]?|not (?:really )?sure|(?:don't|do not|didn't) "
                        r"(?:really )?(?:agree|like|think)|i'm against|not convinced|doubt)\b", re.I)
_AGREES = re.compile(r"(?<!dis)(?<!n't )(?<!not )\bagree[sd]?\b|\bsounds (?:good|great|fine)\b|"
                     r"\b(?:good idea|exactly|absolutely|definitely|fair enough|that's fine|"
                     r"let's (?:do|go with)|decided|settled|approved?)\b", re.I)
_AFFILIATION = re.compile(r"\b([a-z]+)\s+(?:from|of|on|in)\s+the\s+((?:[a-z]+\s+)?[a-z]+)\s+team\b",
                          re.I)
# Text that speaks to the summarizer, not to the meeting.
_INSTRUCTION = re.compile(r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?"
                          r"(?:previous|prior|above|earlier|preceding)\s+(?:instructions?|prompts?)"
                          r"|\bsystem prompt\b|\byou are (?:now )?an? (?:ai|assistant|language model)\b",
                          re.I)
# A summary's words about the meeting, not from it: no turn says "discussed" or "the group".
_META = re.compile(r"\b(?:discuss(?:ed|es|ing|ion|ions)?|talk(?:ed|s)? about|mention(?:ed|s)?|suggest(?:ed|s|ion|ions)?|"
                   r"propos(?:ed|es|al|als)|explain(?:ed|s)|said|says|stated|noted|asked|believed?|"
                   r"thought|felt|agreed|decided|concluded|expressed|pointed out|answered|replied|"
                   r"group|participants?|members?|speakers?|discussion|meeting|topics?|main|also|"
                   r"further|overall|furthermore|moreover|additionally|besides|however|summary)\b", re.I)
# AMI spells letters out: "L_C_D_" is the LCD a summary names.
_ACRONYM = re.compile(r"\b(?:[A-Za-z]_){2,}")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z'-]*(?:\s+[A-Z][A-Za-z'-]*)*")
_ORDINARY_CAPITALISED = STOPWORDS | {
    "i", "the", "a", "an", "this", "that", "these", "those", "they", "we", "he", "she", "it", "its",
    "there", "then", "however", "also", "overall", "finally", "first", "second", "third", "lastly",
    "additionally", "furthermore", "meanwhile", "although", "while", "as", "in", "on", "for", "to",
    "speaker", "speakers", "meeting", "team", "group", "everyone", "someone", "person", "people",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "summary", "ok", "okay", "yes", "no", "mr", "mrs", "ms", "dr"}


# Words of a speaker's name that name a kind of person, not the person.
_ROLE_WORDS = {"grad", "phd", "professor", "postdoc", "undergrad", "project", "manager", "industrial",
               "designer", "user", "interface", "marketing", "expert", "chair", "member", "minister"}


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    supported: bool
    problems: tuple[str, ...]  # why not, one short reason each; empty when supported
    turns: tuple[int, int] | None  # (first, last) evidence turn, 0-based into the checked turns
    support: float = 0.0  # the share of its content words in its evidence


def check_summary(text: str, turns: Sequence[Turn | str], *, speakers: Iterable[str] = (),
                  query: str | None = None, threshold: float = PARAPHRASE_SUPPORT) -> list[SentenceCheck]:
    """One check per sentence of `text`, in order, against `turns` (the spoken turns the summary
    was made from); `speakers` are the meeting's, who may be named without being quoted, and so
    may what the `query` a summary answers names ("the SPG schema", "this Bill"): the user's
    word, not the model's invention.

    The threshold, measured on 80 QMSum train specific-query segments: of their reference
    answers' 263 sentences (people's paraphrases, true, and more abstract than a model's) 13%
    fall below 0.35 against their evidence, 24% below 0.5 and 35% below the minutes' 0.6
    (items in the meeting's own words); of answers checked against another segment, 93% fall
    below 0.35. Of the default model's 49 sentences on 20 of those segments, 3 do. Names, figures and relations catch what a fluent sentence invents in the
    meeting's own vocabulary.

    Attribution, measured on QMSum train too: of 1,033 specific-query references (3,322 sentences,
    630 of them saying what a speaker said or thought), 9 are flagged (two of them rightly: the
    reference gives a question or an official's words to the wrong speaker), and none of 162
    whole-meeting references' 934 sentences; of the default model's 62 sentences on 28 segments,
    21 attribute and 3 are flagged, all three rightly (one speaker's idea or remark given to another)."""
    # With their speakers: "Marketing wanted ten buttons" is borne out by Marketing's own turn.
    texts = [_ACRONYM.sub(lambda m: m.group(0).replace("_", ""), t.render() if isinstance(t, Turn) else str(t))
             for t in turns]
    said = [("" if _INSTRUCTION.search(t) else t) for t in texts]
    names = _speaker_names([*speakers, *(t.speaker for t in turns if isinstance(t, Turn) and t.speaker)])
    names |= {m.group(0).lower() for m in _CAPITALISED.finditer(query or "")}
    names |= {w.lower() for m in _CAPITALISED.finditer(query or "") for w in m.group(0).split()}
    ranker = _Ranker(said)
    voices = _Voices(turns, said, ranker)
    checks = []
    for sentence in split_sentences(text):
        chosen = ranker.evidence(sentence)
        span = (chosen[0], chosen[-1]) if chosen else None
        evidence = " ".join(said[i] for i in chosen)
        where = f"turns {span[0] + 1}-{span[1] + 1}" if span else "the transcript"
        problems = sentence_problems(sentence, evidence, where, names, threshold)
        problems += voices.misattributions(sentence, chosen, threshold)
        share = support(_META.sub(" ", sentence), evidence) if evidence.strip() else 0.0
        checks.append(SentenceCheck(sentence, not problems, tuple(problems), span, round(share, 4)))
    return checks


def keep_supported(text: str, checks: list[SentenceCheck]) -> str:
    """`text` without the sentences `checks` (check_summary's, of this text) found unsupported;
    lines keep their breaks, and a line left empty goes."""
    verdicts = iter(checks)
    lines = []
    for line in text.splitlines():
        said = sentences(line)
        if not said:
            lines.append(line)
            continue
        kept = [s for s in said if next(verdicts).supported]
        if kept:
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(indent + " ".join(kept))
    return "\n".join(lines).strip()


def split_sentences(text: str) -> list[str]:
    """The summary's sentences, line by line (a bullet is a sentence of its own)."""
    return [s for line in text.splitlines() for s in sentences(line)]


def sentence_problems(sentence: str, evidence: str, where: str, speakers: set[str],
                      threshold: float = PARAPHRASE_SUPPORT) -> list[str]:
    """Why `evidence` (the text of the turns called `where`) does not bear `sentence` out."""
    if not evidence.strip():
        return [f"nothing in {where} matches it"]
    problems = []
    share = support(_META.sub(" ", sentence), evidence)
    if share < threshold:
        problems.append(f"only {share:.0%} of its words are in {where}")
    problems += _name_problems(sentence, evidence, where, speakers)
    problems += _figure_problems(sentence, evidence, where)
    problems += _relation_problems(sentence, evidence, where)
    return problems


def _name_problems(sentence: str, evidence: str, where: str, speakers: set[str]) -> list[str]:
    problems = []
    lowered = evidence.lower()
    for m in _CAPITALISED.finditer(sentence):
        words = [w for w in m.group(0).split() if w.lower().strip("'") not in _ORDINARY_CAPITALISED]
        # A sentence's first word is capitalised whatever it is: alone, it names nobody for sure.
        first = m.start() == 0 or sentence[:m.start()].rstrip().endswith((":", "-", "\"", "("))
        if not words or (first and len(m.group(0).split()) == 1):
            continue
        name = " ".join(words)
        if not _named(name, lowered, speakers):
            problems.append(f"names '{name}', who is not in {where} nor a speaker")
    return problems


def _named(name: str, evidence: str, speakers: set[str]) -> bool:
    key = name.lower().removesuffix("'s")
    if any(fuzz.ratio(key, s) >= WORD_MATCH for s in speakers):
        return True
    if re.search(rf"\b{re.escape(key)}", evidence):
        return True
    # "Industrial Design" for the Industrial Designer, "Marco's" for Marco.
    return fuzz.partial_ratio(key, evidence) >= 90 and len(key) > 4


def _speaker_names(speakers: Iterable[str]) -> set[str]:
    """Every way a speaker is named: whole, and each word of the name that is not a role's
    ("Priya" and "Shah" of "Priya Shah", but not "Grad" of "Grad A")."""
    names = set()
    for speaker in speakers:
        speaker = " ".join(str(speaker).split()).lower()
        if not speaker:
            continue
        names.add(speaker)
        words = speaker.split()
        if len(words) > 1:
            names.update(w for w in words if len(w) > 2 and w not in _ROLE_WORDS)
    return names


def _figure_problems(sentence: str, evidence: str, where: str) -> list[str]:
    said = _figures(evidence)
    missing = [f for f in dict.fromkeys(_figure_phrases(sentence)) if _figure_key(f) not in said]
    problems = []
    for phrase in missing:
        kind = "date" if _ISO_DATE.fullmatch(phrase) or _CALENDAR.fullmatch(phrase) else "number"
        problems.append(f"{kind} '{phrase}' is not in {where}")
    claimed = [m for m in _QUANTITY.finditer(sentence) if _figure_key(m["count"]) in said]
    if claimed:  # most sentences count nothing: the evidence is read for quantities only then
        quantities = {_quantity_key(m) for m in _QUANTITY.finditer(evidence)}
        problems += [f"quantity '{m.group(0)}' is not in {where}" for m in claimed
                     if _quantity_key(m) not in quantities]
    return problems


def _quantity_key(m: re.Match) -> tuple[str, str]:
    return _figure_key(m["count"]), m["unit"].lower().replace(" ", "")


def _figure_phrases(text: str) -> list[str]:
    return [m.group(0) for m in (*_ISO_DATE.finditer(text), *_CALENDAR.finditer(text))] + [
        m.group(0) for m in _NUMBER.finditer(_ISO_DATE.sub(" ", text))]


def _figure_key(phrase: str) -> str:
    phrase = phrase.lower().replace(",", "")
    if _ISO_DATE.fullmatch(phrase) or _CALENDAR.fullmatch(phrase):
        return phrase
    return _NUMBER_WORDS.get(phrase) or re.sub(r"(?<=\d)(?:st|nd|rd|th|s)$", "", phrase)


def _figures(text: str) -> set[str]:
    found = {_figure_key(p) for p in _figure_phrases(text)}
    # A transcript spells its counts as it says them: "one" and "a hundred" count too.
    found |= {v for w, v in _NUMBER_WORDS.items() if re.search(rf"\b{w}\b", text, re.I)}
    for m in _COMPOUND.finditer(text):  # "forty five", "two point five"
        tens, unit = (_NUMBER_WORDS[w.lower()] for w in m.group(1, 3))
        found.add(f"{tens}.{unit}" if m.group(2).strip(" -").lower() == "point" else str(int(tens) + int(unit)))
    return found


def _relation_problems(sentence: str, evidence: str, where: str) -> list[str]:
    problems = []
    if _NEGATION.search(sentence) and not (_NEGATION.search(evidence) or _EXCEPTION.search(evidence)):
        problems.append(f"says '{_NEGATION.search(sentence).group(0)}'; {where} negate nothing")
    claim = _CLAIMS_AGREEMENT.search(sentence)
    if (claim and not _NEGATION.search(sentence) and not re.search(r"\bdisagree", sentence, re.I)
            and _DISAGREES.search(evidence) and not _AGREES.search(evidence)):
        problems.append(f"says {claim.group(0).lower()}; {where} disagree")
    for m in _AFFILIATION.finditer(sentence):
        team = m.group(2).lower()
        theirs = [e.group(1).lower() for e in _AFFILIATION.finditer(evidence) if e.group(2).lower() == team]
        if theirs and all(fuzz.ratio(m.group(1).lower(), t) < WORD_MATCH for t in theirs):
            problems.append(f"says {m.group(1)} from the {team} team; {where} say {theirs[0]}")
    return problems


# Verbs by which a summary puts a claim in a speaker's mouth ("Marketing thought ...").
_ATTRIBUTING = (r"(?:also\s+|then\s+|further\s+|later\s+)?(?:said|says|suggest(?:ed|s)|thought|thinks|"
                r"propos(?:ed|es)|wanted|wants|recommend(?:ed|s)|mention(?:ed|s)|believe(?:d|s)|"
                r"agree(?:d|s)|explain(?:ed|s)|ask(?:ed|s)|felt|feels|stated|noted|argued|pointed out|"
                r"expressed|insisted|preferred|liked|disliked|"
                r"(?:was|were|is|are) (?:not |also )?(?:happy|pleased|concerned|worried|keen|sure|unsure|"
                r"against|in favou?r|satisfied|sceptical|skeptical|confident|interested))\b")
# Where a clause, and so an attribution's subject, begins.
_CLAUSE = r"(?:^|[,;:]\s*|\b(?:and|but|while|whereas|however|so|then|also|when)\s+)"
# A title or office a name is written with or without: "Kirsty Williams AM" is "Kirsty Williams".
_TITLES = {"am", "ms", "mp", "msp", "mla", "qc", "dr", "mr", "mrs", "miss", "prof", "professor", "sir"}
# "A proposed X, but the others argued Y": Y is not A's.
_OTHERS = re.compile(r"\b(?:but|while|whereas|although|though|however)\s+(?:the\s+)?(?:other|others|everyone|"
                     r"everybody|rest|team|group|they|some|most|many|nobody|no one)\b", re.I)
# A question, though a transcript may break it off before its "?".
_QUESTION = re.compile(r"\?\s*$|^\W*(?:(?:so|and|but|well|um|uh|okay|ok|right)\W+)*(?:do|does|did|is|are|was|"
                       r"were|can|could|should|would|will|what|how|why|where|who|which|have|has|any)\b", re.I)
ATTRIBUTION_MARGIN = 0.2  # how much better another speaker must carry a claim than its speaker
ATTRIBUTION_CARRIED = 0.5  # and how much of it at least: half, so that the claim is clearly theirs
ATTRIBUTION_WORDS = 4  # content words a claim needs before whose it is can be judged


class _Voices:
    """Who said what: each speaker's turns, and the ways a summary names them."""

    def __init__(self, turns: Sequence[Turn | str], said: list[str], ranker: "_Ranker"):
        self.ranker = ranker
        self.speaker = [(t.speaker or "").strip() if isinstance(t, Turn) else "" for t in turns]
        self.text = [s.split(": ", 1)[1] if self.speaker[i] and s.startswith(self.speaker[i] + ": ") else s
                     for i, s in enumerate(said)]
        self.aliases = {}
        for name in dict.fromkeys(s for s in self.speaker if s):
            words = name.lower().split()
            plain = [w for w in words if w.strip(".") not in _TITLES] or words
            # "A" of a speaker "A" is the article far more often than the speaker.
            for alias in {" ".join(words), " ".join(plain)} - {w for w in words if len(w) < 3}:
                self.aliases.setdefault(alias, name)
        self.pattern = self.subject = None
        if self.aliases:
            alias = "|".join(re.escape(a) for a in sorted(self.aliases, key=len, reverse=True))
            # Where another speaker's clause begins, the claim ends: "A suggested X, but B objected".
            self.subject = re.compile(rf"{_CLAUSE}(?:the\s+)?(?:{alias})\b", re.I)
            self.pattern = re.compile(rf"(?<![\w-])(?:the\s+)?({alias})(?:\s+and\s+(?:the\s+)?({alias}))?"
                                      rf"\s+{_ATTRIBUTING}", re.I)

    def misattributions(self, sentence: str, chosen: list[int], threshold: float) -> list[str]:
        """A claim said to be a speaker's that another speaker made, and the speaker did not."""
        if self.pattern is None or not chosen:
            return []
        found = list(self.pattern.finditer(sentence))
        problems = []
        for k, m in enumerate(found):
            named = {self.aliases[a.lower()] for a in m.groups() if a}
            # Who agrees takes up another's words: the agreement check judges that claim.
            if re.match(r"\s*(?:also\s+)?agree", sentence[m.end(m.lastindex):], re.I):
                continue
            end = found[k + 1].start() if k + 1 < len(found) else len(sentence)
            said = _OTHERS.split(sentence[m.end():end].split(";")[0])[0]
            claim = self._claim(self.subject.split(said)[0])
            if len(content_words(claim)) < ATTRIBUTION_WORDS:
                continue
            carried = self._carried(claim, chosen)
            # The named speaker gets every chance: all their turns across the evidence's span too.
            span = self._carried(claim, range(chosen[0], chosen[-1] + 1))
            own = max(self._own(claim, named), *(span.get(n, 0.0) for n in named))
            other, best = max(((v, s) for s, v in carried.items() if s not in named), default=(0.0, ""))
            if own < threshold and other >= max(threshold, ATTRIBUTION_CARRIED, own + ATTRIBUTION_MARGIN):
                turns = [i + 1 for i in chosen if self.speaker[i] == best]
                problems.append(f"attributes to {' and '.join(sorted(named))} what {best} said "
                                f"(turns {turns[0]}-{turns[-1]})")
        return problems

    def _claim(self, text: str) -> str:
        """The claim's own words: not the names of who said it or to whom, nor the summary's."""
        for alias in sorted(self.aliases, key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(alias)}\b", " ", text, flags=re.I)
        return _META.sub(" ", text)

    def _own(self, claim: str, named: set[str]) -> float:
        """How much of the claim the named speakers' best-matching turns carry, wherever they are."""
        scores = self.ranker.scores(claim)
        theirs = sorted((i for i in range(len(scores)) if self.speaker[i] in named and scores[i] > 0),
                        key=lambda i: -scores[i])[:EVIDENCE_TURNS]
        return _share(claim, " ".join(self._heard(i) for i in theirs)) if theirs else 0.0

    def _heard(self, i: int) -> str:
        """A turn, and the question it answers: "is voice fundamental?" "It's fundamental." """
        asked = i and self.speaker[i - 1] != self.speaker[i] and bool(_QUESTION.search(self.text[i - 1]))
        return f"{self.text[i - 1]} {self.text[i]}" if asked else self.text[i]

    def _carried(self, claim: str, window: Iterable[int]) -> dict[str, float]:
        """How much of the claim each speaker's own turns in the window carry."""
        by = {}
        for i in window:
            if self.speaker[i]:
                by.setdefault(self.speaker[i], []).append(self._heard(i))
        return {s: _share(claim, " ".join(t)) for s, t in by.items()}


def _share(claim: str, said: str) -> float:
    """support() on word stems: who said it is judged on "subtract" for "subtracting" and "on -
    line" for "on-line", where a paraphrase and its speaker part most often."""
    def stems(text: str) -> str:
        return re.sub(r"\b([a-z]{6})[a-z]+", r"\1", text.lower().replace("-", " "))
    return support(stems(claim), stems(said))


class _Ranker(Bm25Index):
    """The turns ranked against a sentence, as `ask` ranks chapters against a question."""

    def evidence(self, sentence: str) -> list[int]:
        """The turns that can bear the sentence out, in order: the best few and their neighbours."""
        scores = self.scores(sentence)
        best = [i for i in sorted(range(self.size), key=lambda i: (-scores[i], i))[:EVIDENCE_TURNS]
                if scores[i] > 0]
        return sorted({j for i in best for j in range(max(0, i - EVIDENCE_REACH),
                                                      min(self.size, i + EVIDENCE_REACH + 1))})
