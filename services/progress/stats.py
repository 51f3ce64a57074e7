"""办理统计: the rates a proposal office reports, as pure functions over the read model.

Each rate has one written definition (口径) in ``shared/statistics.py``, repeated in
``docs/statistics.md``, the API schema and the portal's tooltips. In short, for the proposals of
a year (the year of submission, in the policy's time zone):

- 立案率: accepted (filed, and 并案 as the policy says) over decided proposals; withdrawn ones and
  ones still in review (审查中) are left out.
- 按期办复率: replies approved whose approved draft came by the reply due date, over every reply that
  fell due (one per proposal, round and replying unit; an overdue reply never sent counts).
- 办结率: closed proposals (办结) over filed ones.
- 满意率: per proposal (its latest evaluation round, every evaluation in it satisfied), and per
  evaluation (each signer's result grade in each round).
- 采纳率: adopted suggestions over the answered proposals' suggestions, each counted once (a unit's
  latest approved answer wins; under 分办 a suggestion is adopted if any unit adopted it).
- 答复占比: final answers (each unit's latest approved reply) of the classes the policy counts as
  adopted, and of the policy's first class.
- 逾期: open steps past their due date, by kind and by the unit that owes them.
- 落实率: implemented proposals over closed proposals with measures; 举措按期完成率: measures done by their
  due date over measures done or past due (dropped ones left out); 落实满意率: satisfied implementation
  evaluations over implementation evaluations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.progress.domain import (
    SIGNER_STEPS,
    Dossier,
    MeasureStatus,
    Reply,
    ReplyStatus,
    Stage,
    TrackedMeasure,
    carried_over,
    implemented,
    obligations,
    reply_units,
)
from shared.policy import Policy, local_date

_OUT_OF_HANDLING = (Stage.WITHDRAWN, Stage.MERGED, Stage.NOT_FILED)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def year_of(dossier: Dossier, policy: Policy) -> str:
    """The year a proposal counts in: its submission date in the policy's time zone."""
    return str(local_date(dossier.proposal.submitted_at, policy.timezone).year)


def in_handling(dossier: Dossier) -> bool:
    """Filed (with a 案号) and neither withdrawn nor merged: the proposals whose handling is counted."""
    return bool(dossier.proposal.filing_number) and dossier.stage not in _OUT_OF_HANDLING


# 立案率 ------------------------------------------------------------------------------------------


def filing_outcome(dossier: Dossier, policy: Policy) -> bool | None:
    """立案: True (accepted), False (not accepted), None (no outcome to count: withdrawn, in review, or
    merged when the policy leaves merged proposals out)."""
    if dossier.stage == Stage.WITHDRAWN:
        return None
    if dossier.stage == Stage.MERGED:
        merged = policy.statistics.merged_proposals
        return None if merged == "excluded" else merged == "accepted"
    if dossier.stage == Stage.NOT_FILED:
        return False
    if dossier.proposal.filing_number:
        return True
    return None


# 按期办复率 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplySlot:
    """应答复: the reply one unit owes in one round of one proposal, and how it went."""

    proposal_id: str
    round: int
    unit: str
    due: date | None
    fell_due: bool
    """Counted: approved, sent late, or past its due date without an approved reply."""
    on_time: bool


def _latest(replies: Sequence[Reply]) -> Reply | None:
    return max(replies, key=lambda r: (r.round, r.drafted_at), default=None)


def reply_slots(dossier: Dossier, today: date, policy: Policy) -> list[ReplySlot]:
    """The replies a proposal owed, round by round and unit by unit (分办: every unit)."""
    if not in_handling(dossier):
        return []
    slots = []
    for round_ in range(1, dossier.round + 1):
        replies = dossier.replies_of_round(round_)
        units = list(dict.fromkeys([r.unit for r in replies if r.status == ReplyStatus.APPROVED]))
        if round_ == dossier.round:
            units = list(dict.fromkeys([*reply_units(dossier.proposal), *units]))
        for unit in units:
            own = [r for r in replies if r.unit == unit]
            approved = _latest([r for r in own if r.status == ReplyStatus.APPROVED])
            pending = _latest([r for r in own if r.status == ReplyStatus.DRAFTED])
            latest = approved or pending
            due = (latest.reply_due if latest is not None else None) or dossier.proposal.reply_due
            if due is None:
                continue
            if approved is not None:
                on_time = local_date(approved.drafted_at, policy.timezone) <= due
                slots.append(ReplySlot(dossier.id, round_, unit, due, True, on_time))
            elif pending is not None:
                late = local_date(pending.drafted_at, policy.timezone) > due
                slots.append(ReplySlot(dossier.id, round_, unit, due, late, False))
            else:
                slots.append(ReplySlot(dossier.id, round_, unit, due, today > due, False))
    return slots


# 采纳率 and 答复占比 ------------------------------------------------------------------------------


def final_answers(dossier: Dossier, unit: str | None = None) -> list[Reply]:
    """Each replying unit's latest approved reply (重新办理's reply replaces the first one)."""
    if not in_handling(dossier):
        return []
    by_unit: dict[str, list[Reply]] = {}
    for reply in dossier.replies:
        if reply.status == ReplyStatus.APPROVED and unit in (None, reply.unit):
            by_unit.setdefault(reply.unit, []).append(reply)
    return [answer for replies in by_unit.values() if (answer := _latest(replies)) is not None]


def suggestion_adoption(dossier: Dossier, unit: str | None = None) -> tuple[int, int]:
    """(adopted, suggestions) of one answered proposal, each suggestion once: adopted if any unit's
    final answer adopted it (分办). (0, 0) while no reply is approved."""
    answers = final_answers(dossier, unit)
    if not answers:
        return 0, 0
    numbers = {a["number"] for answer in answers for a in answer.adoptions}
    adopted = {a["number"] for answer in answers for a in answer.adoptions if a["adopted"]}
    count = dossier.proposal.suggestion_count or 0
    return len(adopted), max(count, len(numbers))


# 满意率 ------------------------------------------------------------------------------------------


def proposal_satisfied(dossier: Dossier, policy: Policy) -> bool | None:
    """满意 (按件): every evaluation of the latest evaluated round is satisfied; None if none yet."""
    if not in_handling(dossier) or not dossier.evaluations:
        return None
    latest = max(ev.round for ev in dossier.evaluations)
    satisfied = _satisfied_codes(policy)
    return all(ev.result_grade in satisfied for ev in dossier.evaluations if ev.round == latest)


def _satisfied_codes(policy: Policy) -> set[str]:
    return {grade.code for grade in policy.evaluation_grades if grade.counts_as_satisfied}


# Figures -----------------------------------------------------------------------------------------


def figures(dossiers: Sequence[Dossier], today: date, policy: Policy, unit: str | None = None) -> dict[str, Any]:
    """The headline figures of a set of proposals; with `unit`, the reply-based ones count only that
    unit's replies (per-unit statistics)."""
    outcomes = [filing_outcome(d, policy) for d in dossiers]
    decided = [o for o in outcomes if o is not None]
    handled = [d for d in dossiers if in_handling(d)]
    closed = [d for d in handled if d.proposal.closed_at is not None]
    slots = [s for d in handled for s in reply_slots(d, today, policy) if s.fell_due and unit in (None, s.unit)]
    on_time = [s for s in slots if s.on_time]
    satisfied_codes = _satisfied_codes(policy)
    evaluations = [ev for d in handled for ev in d.evaluations]
    satisfied = [ev for ev in evaluations if ev.result_grade in satisfied_codes]
    judged = [s for d in handled if (s := proposal_satisfied(d, policy)) is not None]
    adoption = [suggestion_adoption(d, unit) for d in handled]
    adopted, suggestions = sum(a for a, _ in adoption), sum(s for _, s in adoption)
    answers = [a for d in handled for a in final_answers(d, unit)]
    adopted_classes = {c.code for c in policy.reply_classes if c.counts_as_adopted}
    first_class = policy.reply_classes[0]
    adopted_class = sum(1 for a in answers if a.classification in adopted_classes)
    first = sum(1 for a in answers if a.classification == first_class.code)
    overdue = [item for d in handled for item in obligations(d) if today > item.due]
    return {
        "submitted": sum(1 for d in dossiers if d.stage != Stage.WITHDRAWN),
        "in_review": sum(1 for d in dossiers if d.stage == Stage.SUBMITTED and not d.proposal.filing_number),
        "decided": len(decided),
        "accepted": sum(decided),
        "filed": len(handled),
        "filing_rate": _rate(sum(decided), len(decided)),
        "replies_due": len(slots),
        "replies_on_time": len(on_time),
        "on_time_reply_rate": _rate(len(on_time), len(slots)),
        "closed": len(closed),
        "closing_rate": _rate(len(closed), len(handled)),
        "proposals_evaluated": len(judged),
        "proposals_satisfied": sum(judged),
        "satisfaction_rate": _rate(sum(judged), len(judged)),
        "evaluations": len(evaluations),
        "satisfied": len(satisfied),
        "evaluation_satisfaction_rate": _rate(len(satisfied), len(evaluations)),
        "suggestions": suggestions,
        "suggestions_adopted": adopted,
        "suggestion_adoption_rate": _rate(adopted, suggestions),
        "replies_final": len(answers),
        "adopted_class_replies": adopted_class,
        "adopted_class_rate": _rate(adopted_class, len(answers)),
        "first_class_replies": first,
        "first_class_rate": _rate(first, len(answers)),
        "implemented": sum(1 for d in handled if d.proposal.implemented_at is not None or implemented(d)),
        "overdue": dict(sorted(Counter(item.kind for item in overdue).items())),
        **implementation_figures(handled, today, policy, unit),
    }


# 落实率, 举措按期完成率, 落实满意率 ------------------------------------------------------------------------


def measure_fell_due(measure: TrackedMeasure, today: date) -> bool:
    """A measure counts once it is done or past its (current) due date; a dropped one never counts."""
    if measure.status == MeasureStatus.DROPPED:
        return False
    return measure.status == MeasureStatus.DONE or today > measure.due


def measure_on_time(measure: TrackedMeasure, policy: Policy) -> bool:
    """Done on or before its (current) due date, in the policy's time zone."""
    done_at = measure.done_at
    if measure.status != MeasureStatus.DONE:
        return False
    # A measure done before its done date was recorded (older rows) counts by its last update.
    done_on = local_date(done_at or measure.updated_at, policy.timezone)
    return done_on <= measure.due


def implementation_figures(
    handled: Sequence[Dossier], today: date, policy: Policy, unit: str | None = None
) -> dict[str, Any]:
    """落实率 (per proposal), 举措按期完成率 (per measure; with `unit`, its own measures only) and 落实满意率
    (per implementation evaluation) of the proposals in handling."""
    closed = [d for d in handled if d.proposal.closed_at is not None and d.measures]
    done = [d for d in closed if d.proposal.implemented_at is not None]
    measures = [m for d in handled for m in d.measures if unit in (None, m.owner_unit)]
    due = [m for m in measures if measure_fell_due(m, today)]
    on_time = [m for m in due if measure_on_time(m, policy)]
    carried = [m for d in handled for m in d.measures if unit in (None, m.owner_unit) and _carried(d, m, policy)]
    satisfied_codes = _satisfied_codes(policy)
    evaluations = [ev for d in handled for ev in d.implementation_evaluations]
    satisfied = [ev for ev in evaluations if ev.grade in satisfied_codes]
    return {
        "closed_with_measures": len(closed),
        "implemented_proposals": len(done),
        "implementation_rate": _rate(len(done), len(closed)),
        "measures_due": len(due),
        "measures_on_time": len(on_time),
        "measure_on_time_rate": _rate(len(on_time), len(due)),
        "implementation_evaluations": len(evaluations),
        "implementation_satisfied": len(satisfied),
        "implementation_satisfaction_rate": _rate(len(satisfied), len(evaluations)),
        "carried_over_measures": len(carried),
        "carried_over_done": sum(1 for m in carried if m.status == MeasureStatus.DONE),
        "carried_in_measures": 0,
        "carried_in_done": 0,
    }


def _carried(dossier: Dossier, measure: TrackedMeasure, policy: Policy) -> bool:
    return measure.status != MeasureStatus.DROPPED and carried_over(dossier, measure, policy.timezone)


def carried_into_years(
    per_year: dict[str, dict[str, Any]], dossiers: Sequence[Dossier], today: date, policy: Policy
) -> dict[str, dict[str, Any]]:
    """跨年度落实: each year's figures also count the measures of earlier years' proposals due in it
    (carried in), and a year with only such measures gets its figures too."""
    carried: dict[str, list[TrackedMeasure]] = {}
    for dossier in dossiers:
        if not in_handling(dossier):
            continue
        for measure in dossier.measures:
            if _carried(dossier, measure, policy):
                carried.setdefault(str(measure.due.year), []).append(measure)
    for year, measures in carried.items():
        if year not in per_year:
            per_year[year] = figures([], today, policy)
        per_year[year]["carried_in_measures"] = len(measures)
        per_year[year]["carried_in_done"] = sum(1 for m in measures if m.status == MeasureStatus.DONE)
    return dict(sorted(per_year.items()))


def _grouped_by(dossiers: Sequence[Dossier], key: Any) -> dict[str, list[Dossier]]:
    groups: dict[str, list[Dossier]] = {}
    for dossier in dossiers:
        groups.setdefault(key(dossier), []).append(dossier)
    return dict(sorted(groups.items()))


def units_of(dossier: Dossier) -> list[str]:
    """The units a proposal counts for: its current replying units (改办 moves it to the new unit)."""
    return reply_units(dossier.proposal) if in_handling(dossier) else []


def per_unit(dossiers: Sequence[Dossier], today: date, policy: Policy) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Dossier]] = {}
    for dossier in dossiers:
        for unit in units_of(dossier):
            groups.setdefault(unit, []).append(dossier)
    return {unit: figures(members, today, policy, unit) for unit, members in sorted(groups.items())}


def statistics(dossiers: Sequence[Dossier], today: date, policy: Policy) -> dict[str, Any]:
    """`GET /stats`: overall, per unit, per year, per category, overdue by unit, key board."""
    overdue_by_unit = Counter(
        item.unit for d in dossiers for item in obligations(d) if today > item.due and item.kind not in SIGNER_STEPS
    )
    first_class = policy.reply_classes[0]
    return {
        "as_of": today.isoformat(),
        "reply_classes": {
            "first": {"code": first_class.code, "label": first_class.label},
            "adopted": [c.code for c in policy.reply_classes if c.counts_as_adopted],
        },
        "overall": figures(dossiers, today, policy),
        "per_unit": per_unit(dossiers, today, policy),
        "per_year": carried_into_years(
            {
                year: figures(members, today, policy)
                for year, members in _grouped_by(dossiers, lambda d: year_of(d, policy)).items()
            },
            dossiers,
            today,
            policy,
        ),
        "per_category": {
            category: figures(members, today, policy)
            for category, members in _grouped_by(dossiers, lambda d: d.proposal.category).items()
        },
        "overdue_by_unit": dict(sorted(overdue_by_unit.items())),
        "key_proposals": [key_board_row(d, today) for d in dossiers if d.proposal.is_key],
    }


def key_board_row(dossier: Dossier, today: date) -> dict[str, Any]:
    """重点提案 board: where each key proposal stands, who supervises it, and its measures."""
    proposal = dossier.proposal
    return {
        "id": dossier.id,
        "title": proposal.title,
        "filing_number": proposal.filing_number,
        "stage": proposal.stage.value,
        "lead_unit": proposal.lead_unit,
        "leaders": list(proposal.leaders),
        "overdue": any(today > item.due for item in obligations(dossier)),
        "measures_total": len(dossier.measures),
        "measures_done": sum(1 for m in dossier.measures if m.status == MeasureStatus.DONE),
        "implemented": proposal.implemented_at is not None,
    }
