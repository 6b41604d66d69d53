"""Prompt-lookup drafts, shared by the backends that decode greedily with them (gguf, onnx_t5).

A summary reuses its transcript's words, so the tokens that followed the latest earlier
occurrence of the last few tokens are a cheap guess at what comes next. A backend feeds the
guess to the model in one call and keeps it only where greedy decoding picks the same tokens.
"""

from __future__ import annotations

# Drafts continue the longest match of the sequence's last LOOKUP_NGRAM..1 tokens.
LOOKUP_NGRAM = 3


class PromptLookup:
    """Drafts: the tokens that followed the latest earlier occurrence of the sequence's last n
    tokens (n = LOOKUP_NGRAM down to 1), in the prompt and the output so far."""

    def __init__(self, tokens: list[int]):
        self.seq: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # an n-gram -> where its latest occurrence ends
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        seq, end = self.seq, len(self.seq)
        for n in range(1, min(LOOKUP_NGRAM, end) + 1):  # the n-grams that `token` now follows
            self.after[tuple(seq[end - n:])] = end
        seq.append(token)

    def draft(self, k: int) -> list[int]:
        seq = self.seq
        for n in range(min(LOOKUP_NGRAM, len(seq)), 0, -1):
            start = self.after.get(tuple(seq[-n:]))
            if start is not None:
                return seq[start:start + k]
        return []
