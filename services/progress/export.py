"""统计导出: the year's figures per unit and per category, and the proposals behind them.

A proposal office hands these on (to the plenary session's report, to leaders, to units). Every figure can
be traced: the 明细 (trace) lists, for every rate of every row of the figures, each item its denominator
counts (a proposal, a reply owed, an evaluation, a suggestion, a final answer) and whether the numerator
counts it too. The lists are computed with the very functions the figures come from
(``services/progress/stats.py``), and a test checks that counting them gives every figure.

Pure: dossiers in, the export's data out (:class:`shared.statistics_export.ExportData`); its CSV and XLSX
files are rendered by ``shared/statistics_export.py``, here with codes, in the portal with words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from services.progress import stats
from services.progress.domain import Dossier
from shared.policy import Policy
from shared.statistics_export import SCOPE_ALL, SCOPE_CATEGORY, SCOPE_UNIT, Codes, ExportData, FigureRow, TraceItem


@dataclass(frozen=True)
class Counted:
    """One thing a rate's denominator counts (see :class:`shared.statistics_export.TraceItem`), and whether
    its numerator counts it too."""

    rate: str
    proposal_id: str
    kind: str
    counted: bool
    unit: str | None = None
    round: int | None = None
    subject: str | None = None
    code: str | None = None
    due: date | None = None


def trace(dossiers: Sequence[Dossier], today: date, policy: Policy, unit: str | None = None) -> list[Counted]:
    """The items behind each rate of :func:`stats.figures` for the same dossiers (and ``unit``)."""
    items: list[Counted] = []
    satisfied_codes = {grade.code for grade in policy.evaluation_grades if grade.counts_as_satisfied}
    adopted_classes = {c.code for c in policy.reply_classes if c.counts_as_adopted}
    first_class = policy.reply_classes[0].code
    for dossier in dossiers:
        pid = dossier.id
        outcome = stats.filing_outcome(dossier, policy)
        if outcome is not None:
            items.append(Counted("filing_rate", pid, "proposal", outcome, code=dossier.stage.value))
        if not stats.in_handling(dossier):
            continue
        for slot in stats.reply_slots(dossier, today, policy):
            if slot.fell_due and unit in (None, slot.unit):
                items.append(
                    Counted("on_time_reply_rate", pid, "reply", slot.on_time, slot.unit, slot.round, due=slot.due)
                )
        items.append(Counted("closing_rate", pid, "proposal", dossier.proposal.closed_at is not None))
        satisfied = stats.proposal_satisfied(dossier, policy)
        if satisfied is not None:
            items.append(Counted("satisfaction_rate", pid, "proposal", satisfied))
        for ev in dossier.evaluations:
            satisfied_one = ev.result_grade in satisfied_codes
            items.append(
                Counted(
                    "evaluation_satisfaction_rate",
                    pid,
                    "evaluation",
                    satisfied_one,
                    round=ev.round,
                    subject=ev.signer_id,
                    code=ev.result_grade,
                )
            )
        items += _suggestions(dossier, unit)
        for answer in stats.final_answers(dossier, unit):
            code, unit_, round_ = answer.classification, answer.unit, answer.round
            items.append(
                Counted("adopted_class_rate", pid, "answer", code in adopted_classes, unit_, round_, code=code)
            )
            items.append(Counted("first_class_rate", pid, "answer", code == first_class, unit_, round_, code=code))
    return items


def _suggestions(dossier: Dossier, unit: str | None) -> list[Counted]:
    """采纳率's items: each suggestion of an answered proposal once, adopted if any final answer adopted it."""
    _, count = stats.suggestion_adoption(dossier, unit)
    if not count:
        return []
    answers = stats.final_answers(dossier, unit)
    numbers = {a["number"] for answer in answers for a in answer.adoptions}
    adopted = {a["number"] for answer in answers for a in answer.adoptions if a["adopted"]}
    unlisted = (n for n in range(1, count + 1 + len(numbers)) if n not in numbers)
    while len(numbers) < count:  # suggestions no answer listed count as not adopted
        numbers.add(next(unlisted))
    return [
        Counted("suggestion_adoption_rate", dossier.id, "suggestion", n in adopted, subject=str(n))
        for n in sorted(numbers)
    ]


# Tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One row of the figures: the year's proposals overall, of one unit, or of one category."""

    scope: str
    key: str
    dossiers: list[Dossier]
    unit: str | None = None


def groups(dossiers: Sequence[Dossier]) -> list[Group]:
    """全部, then each unit (its proposals as the per-unit statistics count them), then each category."""
    by_unit: dict[str, list[Dossier]] = {}
    by_category: dict[str, list[Dossier]] = {}
    for dossier in dossiers:
        for unit in stats.units_of(dossier):
            by_unit.setdefault(unit, []).append(dossier)
        by_category.setdefault(dossier.proposal.category, []).append(dossier)
    return [
        Group(SCOPE_ALL, SCOPE_ALL, list(dossiers)),
        *(Group(SCOPE_UNIT, unit, members, unit) for unit, members in sorted(by_unit.items())),
        *(Group(SCOPE_CATEGORY, category, members) for category, members in sorted(by_category.items())),
    ]


def build(dossiers: Sequence[Dossier], today: date, policy: Policy, year: str | None) -> ExportData:
    """The export of ``year``'s proposals (a year of submission, ``YEAR_RULE``), or of every year."""
    chosen = [d for d in dossiers if year is None or stats.year_of(d, policy) == year]
    figure_rows: list[FigureRow] = []
    trace_items: list[TraceItem] = []
    for group in groups(chosen):
        figures = stats.figures(group.dossiers, today, policy, group.unit)
        figures["overdue_total"] = sum(figures["overdue"].values())
        figure_rows.append({"scope": group.scope, "key": group.key, "figures": figures})
        by_id = {d.id: d.proposal for d in group.dossiers}
        for item in trace(group.dossiers, today, policy, group.unit):
            proposal = by_id[item.proposal_id]
            trace_items.append(
                {
                    "scope": group.scope,
                    "key": group.key,
                    "rate": item.rate,
                    "proposal_id": item.proposal_id,
                    "filing_number": proposal.filing_number,
                    "title": proposal.title,
                    "kind": item.kind,
                    "unit": item.unit,
                    "round": item.round,
                    "subject": item.subject,
                    "code": item.code,
                    "due": item.due.isoformat() if item.due else None,
                    "counted": item.counted,
                }
            )
    first = policy.reply_classes[0]
    return {
        "year": year or "全部年度",
        "first_class": {"code": first.code, "label": first.label},
        "figures": figure_rows,
        "trace": trace_items,
    }


class PolicyWords(Codes):
    """Progress's own files: ids and stage codes (it has no unit names), the policy's grade and class labels."""

    def __init__(self, policy: Policy) -> None:
        self.grades = {grade.code: grade.label for grade in policy.evaluation_grades}
        self.classes = {c.code: f"{c.code} 类 ({c.label})" for c in policy.reply_classes}

    def grade(self, code: str) -> str:
        return self.grades.get(code, code)

    def reply_class(self, code: str) -> str:
        return self.classes.get(code, code)
