"""One BM25 index over short texts, for what ranks text against text without a model: `ask`
ranks a meeting's chapters against the question (retrieval.py), and the faithfulness check
finds the turns a summary sentence draws on (faithfulness.py)."""

from __future__ import annotations

import logging

# bm25s's own list; a query's "what", "we" and "did" stay, and cost little: they are in every
# text, so their inverse document frequency is near zero.
BM25_STOPWORDS = "en"


class Bm25Index:
    """BM25 (bm25s) over `texts`; `scores(query)` gives one score per text, all 0 where nothing
    can match (no text has a word, or the query shares none with them)."""

    def __init__(self, texts: list[str]):
        import bm25s  # numpy comes with it: not for a CLI that only starts

        # bm25s sets its logger to DEBUG when imported: an application that logs would print a
        # line of index building for every query.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.size = len(texts)
        self.tokenizer = bm25s.tokenization.Tokenizer(stopwords=BM25_STOPWORDS)
        self.index = None
        if any(t.strip() for t in texts):
            # An empty text would be dropped by the tokenizer and shift every index after it.
            corpus = self.tokenizer.tokenize([t or "-" for t in texts], show_progress=False)
            self.index = bm25s.BM25()
            self.index.index(corpus, show_progress=False)

    def scores(self, query: str) -> list[float]:
        if self.index is None:
            return [0.0] * self.size
        # Words of the query the texts never use cannot match; they are left out.
        tokens = self.tokenizer.tokenize([query], update_vocab=False, show_progress=False)
        return [float(s) for s in self.index.get_scores(tokens[0])] if tokens[0] else [0.0] * self.size
