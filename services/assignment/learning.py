"""The routing ranking learned from past assignments (历史交办): pure Python, no I/O.

Chinese has no spaces, so a text becomes its character bigrams (汉字二元组) within runs of Chinese
characters, letters and digits; each is weighted by TF-IDF over the past proposals. A unit is
represented by the centroid of the normalised vectors of the proposals it led, and a new proposal
ranks units by cosine similarity to those centroids. Centroids beat a nearest-neighbour vote on a
few hundred examples: one odd past proposal cannot carry a unit to the top.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Ranking = Sequence[tuple[str, float]]
"""Units with their similarity (0..1), most similar first."""

_RUNS = re.compile(r"[\u4e00-\u9fff0-9A-Za-z]+")


def bigrams(text: str) -> list[str]:
    """Character bigrams within each run of Chinese characters, letters and digits."""
    grams: list[str] = []
    for run in _RUNS.findall(text):
        grams.extend(run[i : i + 2] for i in range(len(run) - 1))
    return grams


@dataclass(frozen=True)
class Example:
    """One past assignment: the proposal's text and the unit that led it."""

    text: str
    lead_unit: str


Vector = dict[str, float]


def _normalised(weights: dict[str, float]) -> Vector:
    norm = math.sqrt(sum(value * value for value in weights.values()))
    return {gram: value / norm for gram, value in weights.items()} if norm else {}


class UnitRanker:
    """TF-IDF over character bigrams, one centroid per lead unit."""

    def __init__(self, examples: Iterable[Example]) -> None:
        docs = [(Counter(bigrams(example.text)), example.lead_unit) for example in examples]
        self.size = len(docs)
        frequency: Counter[str] = Counter()
        for counts, _ in docs:
            frequency.update(counts.keys())
        self._idf = {gram: math.log((1 + self.size) / (1 + df)) + 1 for gram, df in frequency.items()}
        sums: dict[str, dict[str, float]] = {}
        for counts, unit in docs:
            total = sums.setdefault(unit, {})
            for gram, value in self._vector(counts).items():
                total[gram] = total.get(gram, 0.0) + value
        self._centroids = {unit: _normalised(total) for unit, total in sums.items()}

    def _vector(self, counts: Counter[str]) -> Vector:
        return _normalised(
            {gram: (1 + math.log(n)) * self._idf[gram] for gram, n in counts.items() if gram in self._idf}
        )

    def rank(self, text: str) -> list[tuple[str, float]]:
        """Every unit that led a past proposal, by similarity of this text to its proposals."""
        query = self._vector(Counter(bigrams(text)))
        scores = [
            (unit, sum(weight * centroid.get(gram, 0.0) for gram, weight in query.items()))
            for unit, centroid in self._centroids.items()
        ]
        return sorted(scores, key=lambda item: (-item[1], item[0]))


def proposal_text(title: str, body: str, suggestions: Sequence[str]) -> str:
    """What the ranker reads of a proposal: the title twice (it names the matter), body, suggestions."""
    return "\n".join([title, title, body, *suggestions])
