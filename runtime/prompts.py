"""The summary-length instructions, kept in one place.

Tiny Titans (Fu et al., 2024) asks for long, medium and short summaries with separate
instructions. Exporters copy these into each bundle's manifest, so a bundle keeps the
prompts it was verified (or fine-tuned) with even if these defaults change later.
"""

LENGTHS = ("long", "medium", "short")
DEFAULT_LENGTH = "medium"

INSTRUCTIONS = {
    "long": (
        "Write a detailed summary of the following meeting transcript. Cover every topic "
        "discussed, the decisions made and the action items, with who is responsible."
    ),
    "medium": (
        "Summarize the following meeting transcript in about 100 words, covering the main "
        "topics, decisions and action items."
    ),
    "short": "Summarize the following meeting transcript in one or two sentences.",
}

# Query-focused summaries (QMSum's specific queries: "What did the group decide about the
# battery?"): the same three lengths, answering the question from the transcript alone.
QUERY_INSTRUCTIONS = {
    "long": (
        "Answer the question about the following meeting transcript in a detailed paragraph, "
        "using only what the transcript says, with who said or decided what. Question: {query}"
    ),
    "medium": (
        "Answer the question about the following meeting transcript in about 100 words, using "
        "only what the transcript says. Question: {query}"
    ),
    "short": (
        "Answer the question about the following meeting transcript in one or two sentences, "
        "using only what the transcript says. Question: {query}"
    ),
}

# Minutes (runtime/minutes/): the model writes the items as JSON where llama.cpp holds it to a
# grammar, else in the plain-text format that `sumctl train` teaches; or, in the hybrid method,
# judges one candidate item at a time.
MINUTES_INSTRUCTION = (
    "List the decisions, action items and open questions of the following meeting transcript, "
    "using only what it says, in this form:\n"
    "Decisions: decision; decision\nActions: Owner: task (due date); task\n"
    "Open questions: question\nWrite none where there are none, and leave out an owner or a "
    "date the transcript does not state."
)
MINUTES_JSON_INSTRUCTION = (
    "List the decisions, action items and open questions of the following meeting transcript "
    "as JSON, using only what it says. Give each action item's task, its owner (a person "
    "named in the transcript, or \"\" when nobody is) and its due date as said (or \"\")."
)
VERDICT_INSTRUCTION = (
    "Here is part of a meeting transcript.\n\n{transcript}\n\nIs \"{item}\" {kind}? "
    "Answer yes or no."
)

# The summary budget for each length, in generated tokens.
MAX_NEW_TOKENS = {"long": 384, "medium": 160, "short": 64}

TRANSCRIPT_SLOT = "{transcript}"
QUERY_SLOT = "{query}"


def query_key(length: str) -> str:
    """The manifest's key for the query-focused prompt of a length."""
    return f"query_{length}"


def default_templates() -> dict[str, str]:
    """Prompt templates with a `{transcript}` slot (and the query ones with a `{query}` slot), as
    stored in a bundle manifest."""
    templates = {length: f"{text}\n\n{TRANSCRIPT_SLOT}" for length, text in INSTRUCTIONS.items()}
    templates.update({query_key(length): f"{text}\n\n{TRANSCRIPT_SLOT}"
                      for length, text in QUERY_INSTRUCTIONS.items()})
    templates["minutes"] = f"{MINUTES_INSTRUCTION}\n\n{TRANSCRIPT_SLOT}"
    templates["minutes_json"] = f"{MINUTES_JSON_INSTRUCTION}\n\n{TRANSCRIPT_SLOT}"
    return templates


def template_for(prompts: dict[str, str], length: str, query: str | None = None) -> str:
    """The bundle's prompt for a length, or, with a question, its query prompt with the question
    filled in (a bundle exported before query prompts existed gets the default one). The
    transcript slot is left for fill()."""
    if not query:
        return prompts[length]
    template = prompts.get(query_key(length)) or default_templates()[query_key(length)]
    return template.replace(QUERY_SLOT, " ".join(query.split()))


def minutes_template(prompts: dict[str, str], *, json_mode: bool) -> str:
    """The bundle's prompt for minutes (a bundle from before minutes gets the default)."""
    key = "minutes_json" if json_mode else "minutes"
    return prompts.get(key) or default_templates()[key]


def verdict_template(prompts: dict[str, str]) -> str:
    """The hybrid method's question about one candidate item; `{item}` and `{kind}` are filled
    by the caller, the transcript slot by fill()."""
    return prompts.get("verdict") or VERDICT_INSTRUCTION


def fill(template: str, transcript: str) -> str:
    # str.replace, not str.format: transcripts are full of braces.
    return template.replace(TRANSCRIPT_SLOT, transcript)
