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

# The summary budget for each length, in generated tokens.
MAX_NEW_TOKENS = {"long": 384, "medium": 160, "short": 64}

TRANSCRIPT_SLOT = "{transcript}"


def default_templates() -> dict[str, str]:
    """Prompt templates with a `{transcript}` slot, as stored in a bundle manifest."""
    return {length: f"{text}\n\n{TRANSCRIPT_SLOT}" for length, text in INSTRUCTIONS.items()}


def fill(template: str, transcript: str) -> str:
    # str.replace, not str.format: transcripts are full of braces.
    return template.replace(TRANSCRIPT_SLOT, transcript)
