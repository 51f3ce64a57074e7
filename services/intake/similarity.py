"""相似提案: ranking filed proposals by similarity to one under review, to support 并案. Pure: no I/O.

Chinese is written without spaces, and a word segmenter (jieba and the like) is a heavy dependency with
its own dictionary to maintain. Character bigrams need neither: most Chinese words are two characters,
so bigrams approximate words, and overlapping bigrams of a longer term ("土地综合整治") still match.
Runs of Latin letters and digits count as one token each (so "5G" or "PM2.5" stay whole). Each text is a
TF-IDF vector (smoothed idf, computed over the candidates and the query together, so boilerplate bigrams
such as "建议" that every proposal contains weigh little), and proposals rank by cosine similarity.
The title is counted twice: it states the subject most densely.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.]*")


@dataclass(frozen=True)
class Document:
    """The text of one proposal that similarity looks at."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Match:
    id: str
    score: float


def tokens(text: str) -> list[str]:
    """Character bigrams of each run of Chinese characters (a lone character is its own token), plus
    Latin/digit words, lower-cased."""
    found: list[str] = []
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            found.append(run)
        found.extend(run[i : i + 2] for i in range(len(run) - 1))
    found.extend(word.lower().rstrip(".") for word in _LATIN_TOKEN.findall(text))
    return found


def _terms(document: Document) -> Counter[str]:
    return Counter(tokens(document.title) * 2 + tokens(document.text))


def _weights(terms: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    return {term: (1 + math.log(count)) * idf[term] for term, count in terms.items()}


def _cosine(left: dict[str, float], right: dict[str, float]) -> float:
    if len(left) > len(right):
        left, right = right, left
    dot = sum(weight * right.get(term, 0.0) for term, weight in left.items())
    norm = math.sqrt(sum(w * w for w in left.values())) * math.sqrt(sum(w * w for w in right.values()))
    return dot / norm if norm else 0.0


def rank_similar(query: Document, candidates: Iterable[Document], *, limit: int) -> list[Match]:
    """The `limit` candidates most similar to `query`, best first; the query itself and candidates
    sharing nothing with it are left out. Ties keep the candidates' order."""
    pool: Sequence[Document] = [candidate for candidate in candidates if candidate.id != query.id]
    term_counts = [_terms(document) for document in pool]
    query_terms = _terms(query)
    document_frequency: Counter[str] = Counter()
    for terms in [*term_counts, query_terms]:
        document_frequency.update(terms.keys())
    total = len(pool) + 1
    idf = {term: math.log((1 + total) / (1 + df)) + 1 for term, df in document_frequency.items()}
    query_vector = _weights(query_terms, idf)
    scored = [
        Match(document.id, round(_cosine(query_vector, _weights(terms, idf)), 4))
        for document, terms in zip(pool, term_counts, strict=True)
    ]
    ranked = sorted((match for match in scored if match.score > 0), key=lambda match: -match.score)
    return ranked[:limit]
