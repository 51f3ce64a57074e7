"""How well the routing suggestion finds the lead unit: `python -m services.assignment.evaluate`.

The labelled set (`data/labelled_proposals.yaml`) is split deterministically: every fifth proposal
is held out, the rest train the learned ranking. On the held-out proposals it reports top-1 and
top-3 accuracy of the lead unit for the rules alone, the learned ranking alone and the combination
the service uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.assignment import domain
from services.assignment.catalogs import LabelledProposal, load_labelled, load_routing
from services.assignment.domain import RoutingRules
from services.assignment.learning import UnitRanker

HOLDOUT_EVERY = 5


def split(
    items: Sequence[LabelledProposal], fold: int = HOLDOUT_EVERY - 1
) -> tuple[list[LabelledProposal], list[LabelledProposal]]:
    """(train, holdout): every fifth proposal, in file order, is held out (by default the 5th, 10th…)."""
    train = [item for index, item in enumerate(items) if index % HOLDOUT_EVERY != fold]
    holdout = [item for index, item in enumerate(items) if index % HOLDOUT_EVERY == fold]
    return train, holdout


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top3: float


@dataclass(frozen=True)
class Report:
    train: int
    holdout: int
    rules: Accuracy
    learned: Accuracy
    combined: Accuracy

    def lines(self) -> list[str]:
        rows = [f"train {self.train}, holdout {self.holdout}"]
        for name, acc in (("rules only", self.rules), ("learned only", self.learned), ("combined", self.combined)):
            rows.append(f"{name:<13} top-1 {acc.top1:.1%}  top-3 {acc.top3:.1%}")
        return rows


def _accuracy(rankings: Sequence[Sequence[str]], truth: Sequence[str]) -> Accuracy:
    n = len(truth) or 1
    top1 = sum(ranked[:1] == [unit] for ranked, unit in zip(rankings, truth, strict=True)) / n
    top3 = sum(unit in ranked[:3] for ranked, unit in zip(rankings, truth, strict=True)) / n
    return Accuracy(top1, top3)


def evaluate(
    rules: RoutingRules, names: dict[str, str], items: Sequence[LabelledProposal], fold: int = HOLDOUT_EVERY - 1
) -> Report:
    """Accuracy on one held-out fifth, the rest training the learned ranking."""
    train, holdout = split(items, fold)
    ranker = UnitRanker(item.example() for item in train)
    truth = [item.lead_unit for item in holdout]
    by_rules, by_learning, combined = [], [], []
    for item in holdout:
        by_rules.append(domain.rules_ranking(item.title, item.body, item.category, rules))
        ranking = ranker.rank(item.text)
        by_learning.append([unit for unit, _ in ranking])
        combined.append(domain.combined_route(item.title, item.body, item.category, rules, ranking, names)[1])
    return Report(
        train=len(train),
        holdout=len(holdout),
        rules=_accuracy(by_rules, truth),
        learned=_accuracy(by_learning, truth),
        combined=_accuracy(combined, truth),
    )


def main() -> None:
    table = load_routing()
    names = {unit.id: unit.short_name or unit.name for unit in table.units}
    items = load_labelled()
    print("holdout: every 5th proposal")
    for line in evaluate(table.rules_only(), names, items).lines():
        print(" ", line)
    reports = [evaluate(table.rules_only(), names, items, fold) for fold in range(HOLDOUT_EVERY)]
    print(f"{HOLDOUT_EVERY}-fold cross-validation (mean):")
    for name in ("rules", "learned", "combined"):
        top1 = sum(getattr(report, name).top1 for report in reports) / len(reports)
        top3 = sum(getattr(report, name).top3 for report in reports) / len(reports)
        print(f"  {name:<13} top-1 {top1:.1%}  top-3 {top3:.1%}")


if __name__ == "__main__":
    main()
