"""Candidate decisions, action items and open questions, from the cues people use to make them.

A 135M model does not find action items reliably on its own, and no public training set labels
them. What marks them is mostly lexical: a commitment ("I'll send the draft"), a request to a
named person ("Lena, please write up the plan"), an assignment ("Sam schedules Thursday"), a
settlement ("let's agree", "we decided"), a question nobody could answer. Each cue gives the
item's owner the way a listener would: the speaker of a commitment, the person a request is
addressed to (by name, or the one who accepts it in the next turn), the person an assignment
names. Nobody else: a cue with no such person has no owner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sumctl.runtime.minutes.dates import find_date_phrase


@dataclass
class Line:
    """One cleaned turn, with the index of the turn it came from in the transcript as written."""

    turn: int
    speaker: str | None
    text: str


@dataclass
class Candidate:
    kind: str  # "decision", "action" or "question"
    text: str  # the decision or question as a statement, or the task as an imperative
    first: int  # positions in the chapter's lines
    last: int
    owner: str | None = None
    due_text: str | None = None
    cue: str = ""  # which cue found it: commitment, request, assignment, unassigned, ...
    sentences: list[str] = field(default_factory=list)  # what it was read from


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])")
_LEAD = re.compile(r"^(?:(?:so|okay|ok|right|well|and|but|yeah|yes|alright|all right|great|good|"
                   r"then|also|now|fine|sure|sounds good)\b[,:.!]?\s*)+", re.I)
_AFFIRMATIVE = re.compile(r"^(?:yes|yeah|yep|sure|ok|okay|will do|no problem|on it|absolutely|"
                          r"definitely|of course|i'll|i will|i can|i'm on it|fine|sounds good|me|"
                          r"leave it with me|happy to)\b", re.I)
_NOT_KNOWN = re.compile(r"^(?:i (?:don't|do not) know|not sure|no idea|good question|"
                        r"i'm not sure|nobody knows|we don't know)\b", re.I)

# Work that is done after the meeting starts with one of these; what runs the meeting itself
# ("I'll show you", "can you see it", "let me explain") does not.
_WORK_PHRASES = re.compile(
    r"^(?:take care of|take (?:a|the) (?:look|lead)|take (?:it|that|this) on|get back to|"
    r"have a look|get (?:it|that|this|them) (?:done|to)|do (?:a|the|some) \w+|"
    r"put together|write (?:up|down|a|an|the|it|this|that|some)|"
    r"make (?:a|an|the|sure|some)|keep (?:an eye|track)|give (?:\w+ )?(?:a|an|the) (?:call|update)|"
    r"send|check|look|fix|prepare|draft|update|schedule|book|email|call|ping|review|finish|"
    r"follow up|set up|organi[sz]e|contact|investigate|test|deploy|ship|order|buy|plan|share|"
    r"find out|figure out|work on|research|design|build|create|draw up|sort out|handle|own|"
    r"collect|compile|circulate|forward|arrange|confirm|talk to|reach out|document|present "
    r"(?:it|the|this|that|our|a) \w+|bring|look (?:at|into|up)|think about|come up with|"
    r"put (?:it|them|this|that|the|our|your|my|a) |make notes|take notes|write|draft|sketch|"
    r"mock up|analy[sz]e|measure|estimate|cost|price|compare|evaluate|benchmark|recruit|hire|"
    r"interview|train|migrate|merge|release|publish|upload|install|configure|run|replace|"
    r"remove|add|move|clean up|refactor|rewrite|split|pay|invoice|sign|approve|submit|file|"
    r"ask|tell|remind|inform|notify|let \w+ know|get (?:[A-Z]\w+ )?(?:a|an|the|some|back)|find|source|"
    r"triage|revisit|assign|"
    r"chase|negotiate|renew|cancel|print|deliver|drive|pick up|call|phone|visit|meet|"
    r"catch up|sync|coordinate|double-check|verify|audit|monitor|track|report|explore|"
    r"save (?:\w+ )?(?:a |the )?cop(?:y|ies))\b", re.I)

_COMMITMENT = re.compile(
    r"\b(?:i'll|i will|i'm going to|i am going to|i'm gonna|i can|let me|i'll be|i'm taking|"
    r"i am taking|i'm on|leave (?:it|that|this) with me and i'll)\s+"
    r"(?:also\s+|just\s+|then\s+|probably\s+|definitely\s+|quickly\s+|try to\s+|happy to\s+)*"
    r"(?P<task>[a-z].*)", re.I)
_REQUEST = re.compile(
    r"\b(?:can you|could you|would you|will you|can we get you to|i need you to|i want you to|"
    r"(?:can|could|would|will) (?:someone|somebody|anyone|anybody)|who (?:can|could|will|wants to)|"
    r"you need to|you'll need to|you should|you'll|you will|you're going to|you are going to|"
    r"(?:^|,\s*)please)\s+(?:please\s+|also\s+|just\s+|then\s+|quickly\s+)*(?P<task>[a-z].*)",
    re.I)
_OBLIGED = re.compile(r"\byou (?:have to|'ve got to|have got to|must)\s+(?:also\s+|just\s+|then\s+)*(?P<task>[a-z].*)",
                      re.I)
# "You'll find the minutes there" is where a thing is, not work to do.
_DISCOVERY = re.compile(r".*\byou(?:'ll| will)\s+(?:also\s+)?(?:find|see|notice)\b", re.I)
# "Tom, the posters are yours", "the look and feel design is for Kate": work handed over by naming it.
_HANDED = re.compile(r"^(?P<task>(?i:the|a|an|our)\s+.+?)\s+(?:is|are)\s+(?:(?P<yours>(?i:yours|for you|on you|your "
                     r"(?:job|task|homework)))|for\s+(?P<who>[A-Z][\w' ]+?))[.!]?$")
_UNASSIGNED = re.compile(
    r"\b(?:someone|somebody|anyone)\s+(?:needs to|need to|should|has to|must|will need to|"
    r"ought to|could)\s+(?P<task>[a-z].*)", re.I)
# Work the whole group takes away, which is only homework when the sentence says so ("for the
# next meeting"); "we need to look at the budget" is usually said of the meeting itself.
_GROUP_TASK = re.compile(
    r"\b(?:we(?:'ll| will)?|you(?:'ll| will)? all|everyone|everybody|each of (?:us|you)|all of (?:us|you))\s+"
    r"(?:all\s+|individually\s+|both\s+)?(?:have to|need to|are going to|are gonna|should|must)\s+"
    r"(?:also\s+|just\s+|all\s+)*(?P<task>[a-z].*)", re.I)
_HOMEWORK = re.compile(r"\b(?:(?:for|before|by|until) (?:the |our )?next (?:meeting|session|call|time|week)|"
                       r"before we meet again|after (?:the|this) meeting|when we go away|in the meantime|"
                       r"individual actions?|(?:next|another|the next) meeting (?:is |starts )?in)\b",
                       re.I)
# Work handed out at a meeting's close: "you're looking at the technical functions design, and
# for you it's the user requirements specification".
_NEXT_HANDED_OUT = re.compile(r",?\s+and\s+(?=for you,? it's\b)", re.I)
_HANDING_OUT = re.compile(r"\b(?:you're|you are)\s+(?P<verb>looking at|working on|doing|taking care of|handling)\s+"
                          r"(?P<task>(?:the|a|an|your)\s+[a-z].*)|\bfor you,? it's\s+(?P<what>(?:the|a|an)\s+[a-z].*)",
                          re.I)
# "We need to update the docs at some point": work for later that nobody took. Without a time
# it is as often about the meeting itself ("we need to look at the budget").
_WE_NEED = re.compile(r"\bwe (?:also |still |probably )*(?:need to|should|have to|must)\s+"
                      r"(?:also\s+|probably\s+|really\s+)*(?P<task>[a-z].*)", re.I)
_LATER = re.compile(r"\b(?:at some point|later|eventually|some time|sometime)\b", re.I)
_DECISION = re.compile(
    r"\b(?:we(?:'ve| have)? decided|decided (?:to|that|on)|we(?:'ve| have)? agreed|agreed (?:to|that|on)|"
    r"let's agree|let us agree|let's go (?:with|for|ahead with)|we'll go (?:with|for|ahead with)|"
    r"we will go (?:with|for|ahead with)|we're going with|we(?:'re| are) (?:going to|gonna) go (?:with|for|ahead with)|"
    r"we(?:'ll| will)? (?:just )?stick with|"
    r"we are going with|we go with|go for it|the decision is|decision:|settled on|we'll stick with|"
    r"let's stick with|it's decided|that's decided|that's settled|we'll use|we will use|"
    r"we're going to use|we are going to use|let's use|let's keep|we'll keep|is approved|approved|"
    r"final answer|we're agreed|we are agreed|so that's agreed|(?:the|our) plan is (?:to|that))\b", re.I)
_UNDECIDED = re.compile(
    r"\b(?:open question|still (?:need|have) to (?:decide|figure out|find out|work out|agree)|"
    r"(?:haven't|have not|didn't|did not|not) (?:yet )?(?:decided|agreed|settled)|still open|"
    r"undecided|to be decided|tbd|don't know yet|do not know yet|remains to be seen|"
    r"(?:needs?|has) to be decided|let's come back to|let's revisit|come back to (?:it|this|that) "
    r"(?:later|next)|park (?:it|this|that)|not sure (?:yet )?(?:whether|if|who|how|what|when))\b",
    re.I)
_NEGATED = re.compile(r"\b(?:not|n't|never|no|nobody|no one|none of us)\b", re.I)
# A proposal, which is a decision once another speaker takes it up ("I second that").
_PROPOSAL = re.compile(r"^(?:i(?:'d)? (?:propose|suggest|move)(?: that)?|(?:why don't|how about|what if) we|"
                       r"shall we|let's|let us|maybe we should|i think we should)\s+(?P<what>[a-z].*)", re.I)
# Proposals about running the meeting itself ("let's move on", "shall we start?") decide nothing,
# and one to put a matter off ("let's leave the cafe for now") leaves it undecided.
_MEETING_BUSINESS = re.compile(r"^(?:we\s+)?(?:start|begin|move on|get (?:started|going|on|back)|go (?:through|over|on|"
                               r"back|around|round|to)|look at|have a look|talk|discuss|see|review|recap|wrap|take "
                               r"a (?:break|look|minute)|hear|come back|turn to|skip|finish|stop|continue|"
                               r"summari[sz]e|think|say|try|just|first|now|do (?:that|this|it) (?:later|now)|leave|park|table|"
                               r"put (?:it|that|this) (?:aside|off)|wait)\b", re.I)
# Taking a proposal up: a vote or a clear yes, not a bare "yeah", which in speech is as often
# "I'm listening".
_TAKEN_UP = re.compile(r"^(?:(?:yeah|yes|oh|well|okay|ok|right|fine|great)[,.!]?\s+)*(?:i second (?:that|it|the motion)|"
                       r"seconded|agreed|i agree|sounds good|makes sense|works for me|fine by me|good idea|"
                       r"great idea|i'm happy with that|happy with that|deal|let's(?: do (?:it|that))?\s*[.!]*$|"
                       r"that works|all in favou?r|carried|(?:the )?motion (?:carries|passed|is carried)|"
                       r"(?:[\w-]+\s+){1,4}it is[.!]*$)", re.I)
_TURNED_DOWN = re.compile(r"\b(?:but|not keen|not sure|disagree|rather not|i'd rather|(?:do not|don't) (?:think|like|want)|"
                          r"motion (?:fails|falls|is defeated)|voted down|rejected|against)\b", re.I)
_QUESTION_WORD = re.compile(r"^(?:what|who|how|when|where|which|why|should|do|does|did|is|are|"
                            r"can|could|would|will|shall)\b", re.I)
_ASSENT = re.compile(r"^(?:(?:that's |all )?agreed\b[,.!:]?\s*(?P<what>.*)|(?P<said>.+?),\s*agreed[.!]*$)", re.I)
_NOT_RESTATED = re.compile(r"^(?:that|that's|it|it's|this|as|if|but|so|yes|yeah|pending|provided|with|"
                           r"everyone|everybody|unless|for now)\b", re.I)
# A question whose "?" the transcript lost ("Do we wanna go for that, or ...").
_ASKS = re.compile(r"^(?:do|does|did|have|has|should|shall|can|could|would|will|are|is)\s+(?:we|you|they)\b", re.I)
_ROLE_TAIL = re.compile(r"\s+(?:designer|expert|manager)$", re.I)
_THIRD_PERSON = re.compile(r"^(?P<verb>[a-z]+)s\b", re.I)
_NOT_VERBS_S = {"i", "wa", "ha", "say", "think", "mean", "want", "like", "know", "seem", "need",
                "look", "sound", "feel", "get", "agree"}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


class People:
    """Who can own an item: the meeting's speakers (by full name, first name, and for roles such
    as AMI's "Industrial Designer", the role as said in speech), and people named in the turns."""

    def __init__(self, speakers: list[str], texts: list[str]):
        self.by_key: dict[str, str] = {}
        for speaker in speakers:
            self.by_key.setdefault(speaker.lower(), speaker)
            first = speaker.split()[0]
            if len(speaker.split()) > 1 and first[:1].isupper() and not _looks_like_role(speaker):
                self.by_key.setdefault(first.lower(), speaker)
            role = _ROLE_TAIL.sub("", speaker)
            if role != speaker:
                self.by_key.setdefault(role.lower(), speaker)
        # People named in speech: a capitalised word used the way names are ("Ana will",
        # ", Ravi?", "ask Ana"), that is not a speaker's and not an ordinary capitalised word.
        # A word also written in lower case ("Look, ..." beside "a look") is no name.
        lower_words = {w for text in texts for w in re.findall(r"\b[a-z][a-z']+\b", text)}
        for text in texts:
            for m in re.finditer(r"(?:^|[,;:]\s*|\b(?:ask|tell|email|ping|call|with|from|to)\s+)"
                                 r"([A-Z][a-z]{2,})\b(?=\s*(?:[,?.!]|will\b|'ll\b|is going\b|can\b|"
                                 r"should\b|needs?\b|on the\b|please\b|$))", text):
                name = m.group(1)
                if name.lower() not in _COMMON_CAPITALISED and name.lower() not in lower_words:
                    self.by_key.setdefault(name.lower(), name)
        self._pattern = (re.compile(r"\b(?:the\s+)?(" + "|".join(
            re.escape(k) for k in sorted(self.by_key, key=len, reverse=True)) + r")\b", re.I)
            if self.by_key else None)

    def find(self, text: str) -> str | None:
        """The one person the text names, or None (nobody, or several)."""
        if self._pattern is None:
            return None
        found = {self.by_key[m.group(1).lower()] for m in self._pattern.finditer(text)}
        return found.pop() if len(found) == 1 else None

    def leading(self, text: str) -> tuple[str, str] | None:
        """(person, rest) where the text starts with a person: "Marco on the export fix"."""
        if self._pattern is None:
            return None
        m = self._pattern.match(text)
        if not m:
            return None
        return self.by_key[m.group(1).lower()], _after_person(text[m.end():])

    def subjects(self, text: str) -> list[tuple[str, str]]:
        """(person, rest) for each person the text names as the subject of what they will do,
        wherever in the clause: "In the meantime, the Industrial Designer over here is gonna
        work on the look and feel", "and the Marketing Expert is going to work on ..."."""
        if self._pattern is None:
            return []
        subjects = [m for m in self._pattern.finditer(text) if _SUBJECT_MODAL.match(_after_person(text[m.end():]))]
        found = []
        for m, after in zip(subjects, subjects[1:] + [None]):
            # A task runs to the next person who is to do something ("... design and the
            # Marketing Expert is going to ..."), past persons it merely names.
            rest = _after_person(text[m.end():after.start() if after else len(text)])
            found.append((self.by_key[m.group(1).lower()], re.sub(r"[\s,]+(?:and|then)?\s*$", "", rest)))
        return found


# What may stand between a person and their verb: the rest of a role's title as said ("the User
# Interface *Designer*"), and where they sit ("over here").
_PERSON_TAIL = re.compile(r"^(?:designer|expert|manager)?\s*(?:(?:over )?(?:here|there)\b)?", re.I)


def _after_person(rest: str) -> str:
    return _PERSON_TAIL.sub("", rest.strip(" ,:"), count=1).strip(" ,:")


def _looks_like_role(name: str) -> bool:
    return bool(_ROLE_TAIL.search(name)) or name.lower() in {"marketing", "user interface"}


_COMMON_CAPITALISED = {
    "the", "we", "it", "this", "that", "i", "so", "and", "but", "also", "then", "okay", "ok",
    "yes", "yeah", "no", "well", "right", "great", "good", "thanks", "thank", "sure", "sounds",
    "let", "let's", "can", "could", "would", "will", "should", "maybe", "perhaps", "what", "who",
    "how", "when", "where", "why", "which", "there", "here", "they", "you", "he", "she", "our",
    "my", "your", "their", "its", "if", "or", "for", "on", "in", "at", "to", "of", "a", "an",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "morning", "afternoon", "everyone", "everybody", "all", "hi", "hello",
    "now", "just", "actually", "anyway", "alright", "please", "sorry", "fine", "cool", "nice",
    "first", "second", "next", "last", "finally", "after", "before", "because", "since", "as",
    "q1", "q2", "q3", "q4", "ci", "qa", "api", "ui", "ux", "pm", "someone", "somebody",
    "anyone", "anybody", "nobody", "everyone", "none", "whoever", "people", "guys", "folks",
}


def find_candidates(lines: list[Line], people: People) -> list[Candidate]:
    """Every cue in a chapter's lines, each as a candidate item with its owner and date phrase."""
    found: list[Candidate] = []
    for i, line in enumerate(lines):
        for sentence in sentences(line.text):
            for part in _NEXT_HANDED_OUT.split(sentence):
                found.extend(_read_sentence(part, i, lines, people))
    found = [c for c in found if not (c.kind == "action" and _garbled(c.text))]
    return [_date_from_mention(_resolve_demonstrative(c, lines), lines)
            for c in _attach_acceptances(found, lines)]


# Speech that broke off and started again: a word cut short ("save th a copy", "the user g
# requirements"), or a phrase restarted in the first person ("do some I'll rub the features").
# Short words without a vowel that are whole words, said in lower case all the same.
_CONSONANT_WORDS = {"pr", "hr", "cv", "pc", "tv", "st", "dr", "mr", "ms", "km", "kg", "cm", "mm", "ml", "mb", "gb",
                    "tb", "kb", "js", "db", "pdf", "css", "npm", "sql", "xml", "crm", "cms", "ssh", "url", "dns",
                    "vpn", "cdn", "tcp", "rpm", "sms", "jwt", "gdp", "vc", "sdk", "pm", "hq", "nhs", "bbc", "ppt"}
_CUT_WORD = re.compile(r"(?<![\w'-])[b-df-hj-np-tv-xz]{2,3}(?![\w'-])"
                       r"|(?<=[a-z] )(?<!plan )(?<!option )(?<!version )(?<!type )(?<!part )(?<!step )"
                       r"[b-df-hj-np-tv-wz](?= [a-z])")
_RESTART = re.compile(r"\b(?:some|the|a|an|to|of|my|our|your)\s+(?:i|i'll|i'm|i've|we're|we'll)\b", re.I)


def _garbled(task: str) -> bool:
    """A task read out of speech that broke off mid-phrase: no reader can act on it as written."""
    return bool(_RESTART.search(task) or any(m.group(0) not in _CONSONANT_WORDS for m in _CUT_WORD.finditer(task)))


def _read_sentence(sentence: str, i: int, lines: list[Line], people: People) -> list[Candidate]:
    body = _LEAD.sub("", sentence).strip()
    is_question = sentence.rstrip().endswith("?")
    if _UNDECIDED.search(body):
        return [Candidate("question", _statement(body), i, i, cue="undecided", sentences=[sentence])]
    if (accepted := _accepted_proposal(sentence, body, i, lines)) is not None:
        return [accepted]
    if is_question and _QUESTION_WORD.match(body) and not _REQUEST.search(body):
        return _unanswered(sentence, body, i, lines)
    if not is_question and (assent := _assent(body, sentence, i)):
        return [assent]
    out = _decisions(sentence, body, i, is_question) + _assignments(sentence, body, i, lines[i].speaker, people)
    if any(c.kind == "action" for c in out):
        return out
    single = _single_cue_action(body, is_question, lines[i].speaker, people, _turn_with_lead_in(i, lines))
    if single:
        cue, task, owner = single
        out.append(Candidate("action", task, i, i, owner=owner, cue=cue, due_text=find_date_phrase(body),
                             sentences=[sentence]))
    return out


def _unanswered(sentence: str, body: str, i: int, lines: list[Line]) -> list[Candidate]:
    """A question that the next speaker could not answer is left open."""
    if i + 1 < len(lines) and lines[i + 1].speaker != lines[i].speaker and _NOT_KNOWN.match(
            _LEAD.sub("", lines[i + 1].text)):
        return [Candidate("question", _statement(body), i, i + 1, cue="unanswered",
                          sentences=[sentence, lines[i + 1].text])]
    return []


def _assent(body: str, sentence: str, i: int) -> Candidate | None:
    """"One year, agreed." or "Agreed, two days." settles what it restates."""
    assent = _ASSENT.match(body)
    if not assent:
        return None
    what = (assent["said"] or assent["what"] or "").strip(" ,.!")
    if assent["what"] and (len(what.split()) > 3 or _NOT_RESTATED.match(what)):
        return None  # "Agreed, as long as the crashes get fixed": a condition, not the decision
    if len(what.split()) < 2:
        return None
    return Candidate("decision", f"Agreed: {what.rstrip('.?!')}.", max(0, i - 1), i, cue="settled",
                     sentences=[sentence])


def _accepted_proposal(sentence: str, body: str, i: int, lines: list[Line]) -> Candidate | None:
    """"I propose we open on Sundays" answered "I second that", or "Why don't we get a second
    quote?" answered "Makes sense to me": a decision, with the answer in its evidence. An answer
    that turns it down ("but", "not keen", a motion that fails) leaves it a proposal."""
    proposal = _PROPOSAL.match(body)
    if not proposal or _MEETING_BUSINESS.match(proposal["what"]) or not lines[i].speaker:
        return None
    answers = [k for k in range(i + 1, min(len(lines), i + 3)) if lines[k].speaker != lines[i].speaker]
    if any(_TURNED_DOWN.search(lines[k].text) for k in answers):
        return None
    taken = next((k for k in answers if _TAKEN_UP.match(lines[k].text.strip())), None)
    if taken is None:
        return None
    what = re.sub(r"^we\s+", "", proposal["what"].strip(" ?.!"), flags=re.I)
    if len(what.split()) < 3:
        return None
    return Candidate("decision", f"Agreed: {what}.", i, taken, cue="settled",
                     sentences=[sentence, lines[taken].text])


def _decisions(sentence: str, body: str, i: int, is_question: bool) -> list[Candidate]:
    decision = _DECISION.search(body)
    if (not decision or is_question or _ASKS.match(body)
            or _NEGATED.search(body[:decision.start()][-20:])
            or (decision.group(0).lower().startswith(("the plan", "our plan"))  # "the plan is to go through ..."
                and _MEETING_BUSINESS.match(body[decision.end():].strip()))):
        return []
    text = _decision_text(body)
    return [Candidate("decision", text, i, i, cue="settled", sentences=[sentence])] if text else []


def _assignments(sentence: str, body: str, i: int, speaker: str | None, people: People) -> list[Candidate]:
    """Tasks given to people by name: at a clause's start ("Marco on the export fix"), or
    anywhere that a person is named with what they will do."""
    out = []
    for clause in re.split(r"\s*[;,]\s*(?=[A-Z])|\s*;\s*", body):
        assigned = _assignment(clause, people, speaker)
        if assigned:
            owner, task = assigned
            # "Lena on the test plan and the interview": two tasks.
            for part in re.split(r"\s+and\s+(?=(?:the|a|an)\s)", task) if task[:4].lower() in (
                    "the ", "a ", "an ") else [task]:
                out.append(Candidate("action", _capital(part), i, i, owner=owner, cue="assignment",
                                     due_text=find_date_phrase(clause), sentences=[sentence]))
    if out:
        return out
    if handed := _handed(body, people, speaker):
        owner, task = handed
        return [Candidate("action", task, i, i, owner=owner, cue="assignment",
                          due_text=find_date_phrase(body), sentences=[sentence])]
    for owner, rest in people.subjects(body):
        m = _SUBJECT_MODAL.match(rest)
        if owner != speaker and _is_work(m["task"]):
            out.append(Candidate("action", _task(m["task"]), i, i, owner=owner, cue="assignment",
                                 due_text=find_date_phrase(rest), sentences=[sentence]))
    return out


def _handed(body: str, people: People, speaker: str | None) -> tuple[str, str] | None:
    """(owner, task) of "Tom, the posters for the sale are yours" or "the look and feel design
    is for Kate"."""
    vocative, _, rest = body.partition(", ")
    addressed = people.find(vocative) if rest else None
    m = _HANDED.match(rest if addressed else body)
    if not m:
        return None
    owner = addressed if m["yours"] else (people.find(m["who"]) if m["who"] else None)
    if owner is None or owner == speaker:
        return None
    return owner, _capital(m["task"])


def _turn_with_lead_in(i: int, lines: list[Line]) -> str:
    """A turn, and its speaker's turn just before when only short replies stand between: "we've
    got another meeting in thirty minutes, so you're" / "Alright." / "you're looking at ..." """
    back = next((k for k in range(i - 1, max(-1, i - 4), -1) if lines[k].speaker == lines[i].speaker), None)
    if back is not None and all(len(lines[k].text.split()) <= 4 for k in range(back + 1, i)):
        return f"{lines[back].text} {lines[i].text}"
    return lines[i].text


def _single_cue_action(body: str, is_question: bool, speaker: str | None,
                       people: People, turn: str = "") -> tuple[str, str, str | None] | None:
    """(cue, task, owner) of a request, a commitment, or work that nobody took; none whose task
    is only a verb and a pronoun ("I'll buy it", "what I'm gonna tell you")."""
    found = _single_cue(body, is_question, speaker, people, turn)
    return None if found is None or _vague(found[1]) else found


def _single_cue(body: str, is_question: bool, speaker: str | None,
                people: People, turn: str) -> tuple[str, str, str | None] | None:
    request = _REQUEST.search(body)
    if request and _is_work(request["task"]) and not _DISCOVERY.match(request.group(0)):
        owner = people.find(_vocatives(body))
        return "request", _task(request["task"]), None if owner == speaker else owner
    # "You have to" is as often anyone ("you have to press it twice"): a task only where it
    # names whom it is for, or the turn hands out work for after the meeting.
    obliged = _OBLIGED.search(body)
    if obliged and _is_work(obliged["task"]):
        owner = people.find(_vocatives(body))
        if (owner and owner != speaker) or _HOMEWORK.search(turn):
            return "request", _task(obliged["task"]), None if owner == speaker else owner
    handing_out = _HANDING_OUT.search(body)
    if handing_out and _HOMEWORK.search(turn):
        if handing_out["verb"]:
            verb = {"looking at": "look at", "working on": "work on", "doing": "do"}.get(handing_out["verb"].lower(),
                                                                                         handing_out["verb"])
            return "request", _task(f"{verb} {handing_out['task']}"), None
        return "request", _task(handing_out["what"]), None
    if is_question:
        return None
    commitment = _COMMITMENT.search(body)
    if commitment and _is_work(commitment["task"]):
        return "commitment", _task(commitment["task"]), speaker
    unassigned = _UNASSIGNED.search(body)
    if unassigned and _is_work(unassigned["task"]):
        return "unassigned", _task(unassigned["task"]), None
    we_need = _WE_NEED.search(body)
    if we_need and _is_work(we_need["task"]) and (_LATER.search(body) or find_date_phrase(body)):
        return "unassigned", _task(_LATER.split(we_need["task"])[0]), None
    group = _GROUP_TASK.search(body)
    if group and _HOMEWORK.search(body) and _is_work(group["task"]):
        return "unassigned", _task(_HOMEWORK.split(group["task"])[0]), None
    return None


# Said of a person named mid-sentence, only a future or an obligation makes them the owner: "ask
# Ana to check it" may be the speaker's own task.
_FUTURE_OR_DUTY = r"will|'ll|is going to|is gonna|should|needs to|has to|is responsible for"
_TASK_AFTER = r")\s+(?:also\s+|then\s+|just\s+|now\s+)*(?P<task>[a-z].*)"
_SUBJECT_MODAL = re.compile(r"(?:" + _FUTURE_OR_DUTY + _TASK_AFTER, re.I)
# A person leading a clause owns more: "Lena can do Thursday", "Sam takes care of the room".
_MODAL_TASK = re.compile(r"(?:" + _FUTURE_OR_DUTY + r"|can|takes care of|is taking|is on|to" + _TASK_AFTER, re.I)


def _assignment(clause: str, people: People, speaker: str | None) -> tuple[str, str] | None:
    """(owner, task) for "Marco on the export fix", "Sam schedules Thursday", "the industrial
    designer will work on the components", "Ana will send the invoice"."""
    clause = _LEAD.sub("", clause.strip(" .!:")).strip()
    lead = people.leading(clause)
    if lead is None:
        return None
    owner, rest = lead
    if owner == speaker:
        return None  # "Marco will..." said by Marco is a commitment: the next rule reads it
    m = _MODAL_TASK.match(rest)
    if m and _is_work(m["task"]):
        return owner, _task(m["task"])
    m = re.match(r"on\s+(?P<task>(?:the|a|an|our|his|her|their)\s+.*)", rest, re.I)
    if m:
        return owner, _capital(m["task"])
    m = _THIRD_PERSON.match(rest)
    if m and m["verb"].lower() not in _NOT_VERBS_S and len(rest.split()) >= 2:
        verb = m["verb"]
        base = verb[:-2] + "y" if verb.endswith("ie") else (
            verb[:-1] if re.search(r"(?:ch|sh|x|ss)e$", verb) else verb)
        task = base + rest[m.end():]
        if _is_work(task):
            return owner, _task(task)
    return None


def _is_work(task: str) -> bool:
    """Whether a task names work to do after the meeting: it starts with a work verb or phrase
    (a list, not "any verb": "I'm from Leicester" and "I'll show you" are no tasks)."""
    task = task.strip()
    if re.match(r"(?:tell|show|give) (?:you|us|everyone)\b|(?:finish|wrap) up\b", task, re.I):
        return False  # "I'll tell you about the findings", "finish up with a discussion": the meeting itself
    if re.match(r"be\s+\w+ing\b", task, re.I):  # "I'll be working on the design"
        task = re.sub(r"^be\s+(\w+?)ing\b", lambda m: _ing_base(m.group(1)), task, flags=re.I)
    return len(task.split()) >= 2 and _WORK_PHRASES.match(task) is not None


def _ing_base(stem: str) -> str:
    for base in (stem, stem + "e"):
        if _WORK_PHRASES.match(base + " x") or base in ("work", "look", "check", "prepare"):
            return base
    return stem


def _task(text: str) -> str:
    """The task as an imperative: the cue words gone, and the vocative and please too."""
    text = re.sub(r"^be\s+(\w+?)ing\b", lambda m: _ing_base(m.group(1)), text.strip(), flags=re.I)
    text = re.sub(r",?\s*(?:please|for me)\b", "", text, flags=re.I)
    text = re.sub(r",\s*[A-Z][a-z]+\s*[?.!]?$", "", text)  # "..., Marco?"
    return _capital(text.strip(" ,.!?;:"))


def _vocatives(text: str) -> str:
    """The parts of a request where a name is a vocative: its start and its end."""
    parts = [p.strip() for p in re.split(r",", text)]
    return " , ".join(p for p in (parts[0], parts[-1]) if len(p.split()) <= 3) if parts else ""


def _decision_text(text: str) -> str:
    text = text.strip(" .!")
    text = re.sub(r"^(?:let's|let us) agree(?: that| on)?\s+", "Agreed: ", text, flags=re.I)
    text = re.sub(r"^(?:let's|we'll|we will|we're going to|we are going to) (go with|go for|go ahead with|stick with|use|keep)\b",
                  r"The team will \1", text, flags=re.I)
    text = re.sub(r"^we\b", "The team", text, flags=re.I)
    return _capital(text) + "." if len(text.split()) >= 3 else ""


def _statement(text: str) -> str:
    return _capital(text.strip())


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _attach_acceptances(found: list[Candidate], lines: list[Line]) -> list[Candidate]:
    """A request answered by "Yes, I'll take it" is one item: its owner is the person who
    accepted it (where the request named nobody), and its evidence runs to the answer. A
    commitment made in that answer ("Sure, I'll send it Friday") is the same item."""
    kept: list[Candidate] = []
    for c in found:
        request = next((k for k in reversed(kept) if k.cue.startswith("request") and k.first < c.first
                        <= (k.last if k.cue == "request+accepted" else k.last + 1)), None)
        if (c.kind == "action" and c.cue == "commitment" and request is not None
                and request.owner in (None, lines[c.first].speaker)):
            _accept(request, c.first, lines, c.due_text)
            continue
        kept.append(c)
        if c.cue == "request" and c.last + 1 < len(lines):
            answer = lines[c.last + 1]
            if (answer.speaker and answer.speaker != lines[c.first].speaker
                    and c.owner in (None, answer.speaker)
                    and _AFFIRMATIVE.match(_LEAD.sub("", answer.text) or answer.text)):
                _accept(c, c.last + 1, lines, find_date_phrase(answer.text))
    return kept


def _accept(request: Candidate, at: int, lines: list[Line], due_text: str | None) -> None:
    request.owner = lines[at].speaker
    request.last = max(request.last, at)
    request.due_text = request.due_text or due_text
    request.cue = "request+accepted"
    if lines[at].text not in request.sentences:
        request.sentences.append(lines[at].text)


_DEMONSTRATIVE = re.compile(r"\b(?:that|this|the same)\s+(?P<head>[a-z]+)\b", re.I)


def _resolve_demonstrative(c: Candidate, lines: list[Line]) -> Candidate:
    """"Can you own that fix?" names its task by pointing back: to "the export fix" said a turn
    or two before. That mention becomes the task's words, and its turn (with any date said
    there) part of the evidence."""
    m = _DEMONSTRATIVE.search(c.text)
    if c.kind != "action" or not m:
        return c
    head = m["head"].lower()
    phrase = re.compile(rf"\b(?:the|an?|our|your)\s+(?:[a-z]+\s+){{0,2}}{re.escape(head)}\b", re.I)
    for back in range(c.first - 1, max(-1, c.first - 4), -1):
        for sentence in sentences(lines[back].text):
            found = phrase.search(sentence)
            if found and found.group(0).lower().split()[1:] != [head]:
                c.text = c.text[:m.start()] + found.group(0).lower() + c.text[m.end():]
                c.first = back
                # The date said with the mention ("the export fix lands by Friday"), not
                # another one earlier in the sentence ("ship on October 14th if ...").
                c.due_text = c.due_text or find_date_phrase(sentence[found.start():])
                c.sentences.insert(0, sentence)
                return c
    return c


_NOUN_PHRASE_TASK = re.compile(r"(?:the|a|an)\s+(?:[a-z]+\s+){0,2}(?P<head>[a-z]{4,})", re.I)


def _date_from_mention(c: Candidate, lines: list[Line]) -> Candidate:
    """A recap hands out a task by its name alone ("Lena on ... the interview") and its date was
    said where the thing was first raised ("Interviews are Thursday"): that sentence, the latest
    of the few turns before that names the thing with a date, gives the date and joins the
    evidence."""
    m = _NOUN_PHRASE_TASK.fullmatch(c.text)
    if c.kind != "action" or c.due_text or not m:
        return c
    named = re.compile(rf"\b{re.escape(m['head'].lower().removesuffix('s'))}s?\b", re.I)
    for back in range(c.first - 1, max(-1, c.first - 6), -1):
        for sentence in sentences(lines[back].text):
            if named.search(sentence) and (due := find_date_phrase(sentence)):
                c.due_text, c.first = due, back
                c.sentences.append(sentence)  # after the recap's own: _with_recaps reads the first
                return c
    return c


def _vague(task: str) -> bool:
    words = re.findall(r"[a-z']+", task.lower())
    content = [w for w in words if w not in {"it", "that", "this", "them", "one", "the", "a", "on", "you", "me", "us",
                                             "care", "of", "so", "too", "as", "well", "now"}]
    return len(content) <= 1
