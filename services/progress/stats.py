"""办理统计: the rates a proposal office reports, as one pure function over the read model.

Definitions (the regulation is silent on the exact denominators; these are written down in
docs/decisions.md):

- 立案率: filed proposals (with a 案号) over submitted ones, withdrawn ones left out.
- 按期办复率: approved replies drafted on or before their reply due date, over approved replies.
- 办结率: closed proposals (办结) over filed ones.
- 满意率: evaluations whose result grade (办理结果) counts as satisfied (满意 + 基本满意), over evaluations.
- 采纳率: adopted suggestions over the suggestions the approved replies answered; and replies of
  the first reply class (A 已解决或采纳) over approved replies.
- 逾期: open steps past their due date, by kind and by the unit that owes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

from services.progress.domain import Dossier, ReplyStatus, Stage, implemented, obligations
from shared.policy import Policy, local_date


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def figures(dossiers: Sequence[Dossier], today: date, policy: Policy) -> dict[str, Any]:
    """The headline figures of a set of proposals."""
    submitted = [d for d in dossiers if d.stage != Stage.WITHDRAWN]
    filed = [d for d in submitted if d.proposal["filing_number"]]
    closed = [d for d in filed if d.proposal["closed_at"] is not None]
    approved = [r for d in filed for r in d.replies if r["status"] == ReplyStatus.APPROVED]
    on_time = [
        r
        for r in approved
        if r["reply_due"] is not None and local_date(r["drafted_at"], policy.timezone) <= r["reply_due"]
    ]
    evaluations = [ev for d in filed for ev in d.evaluations]
    satisfied_codes = {grade.code for grade in policy.evaluation_grades if grade.counts_as_satisfied}
    satisfied = [ev for ev in evaluations if ev["result_grade"] in satisfied_codes]
    adoptions = [a for r in approved for a in r["adoptions"]]
    first_class = policy.reply_classes[0].code
    overdue = [item for d in filed for item in obligations(d) if today > item.due]
    return {
        "submitted": len(submitted),
        "filed": len(filed),
        "filing_rate": _rate(len(filed), len(submitted)),
        "replies_approved": len(approved),
        "replies_on_time": len(on_time),
        "on_time_reply_rate": _rate(len(on_time), len(approved)),
        "closed": len(closed),
        "closing_rate": _rate(len(closed), len(filed)),
        "evaluations": len(evaluations),
        "satisfied": len(satisfied),
        "satisfaction_rate": _rate(len(satisfied), len(evaluations)),
        "suggestions_answered": len(adoptions),
        "suggestions_adopted": sum(1 for a in adoptions if a["adopted"]),
        "suggestion_adoption_rate": _rate(sum(1 for a in adoptions if a["adopted"]), len(adoptions)),
        "first_class_replies": sum(1 for r in approved if r["classification"] == first_class),
        "first_class_rate": _rate(sum(1 for r in approved if r["classification"] == first_class), len(approved)),
        "implemented": sum(1 for d in filed if d.proposal["implemented_at"] is not None or implemented(d)),
        "overdue": dict(sorted(Counter(item.kind for item in overdue).items())),
    }


def _grouped(
    dossiers: Sequence[Dossier], keys: Callable[[Dossier], Iterable[str]], today: date, policy: Policy
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Dossier]] = {}
    for dossier in dossiers:
        for key in keys(dossier):
            groups.setdefault(key, []).append(dossier)
    return {key: figures(members, today, policy) for key, members in sorted(groups.items())}


def year_of(dossier: Dossier, policy: Policy) -> str:
    return str(local_date(dossier.proposal["submitted_at"], policy.timezone).year)


def statistics(dossiers: Sequence[Dossier], today: date, policy: Policy) -> dict[str, Any]:
    """`GET /stats`: overall, per lead unit, per year, per category, overdue by unit, key board."""
    overdue_by_unit = Counter(
        item.unit for d in dossiers for item in obligations(d) if today > item.due and item.kind != "evaluation"
    )
    return {
        "as_of": today.isoformat(),
        "overall": figures(dossiers, today, policy),
        "per_unit": _grouped(
            dossiers, lambda d: [d.proposal["lead_unit"]] if d.proposal["lead_unit"] else [], today, policy
        ),
        "per_year": _grouped(dossiers, lambda d: [year_of(d, policy)], today, policy),
        "per_category": _grouped(dossiers, lambda d: [d.proposal["category"]], today, policy),
        "overdue_by_unit": dict(sorted(overdue_by_unit.items())),
        "key_proposals": [key_board_row(d, today) for d in dossiers if d.proposal["is_key"]],
    }


def key_board_row(dossier: Dossier, today: date) -> dict[str, Any]:
    """重点提案 board: where each key proposal stands, who supervises it, and its measures."""
    proposal = dossier.proposal
    return {
        "id": dossier.id,
        "title": proposal["title"],
        "filing_number": proposal["filing_number"],
        "stage": proposal["stage"],
        "lead_unit": proposal["lead_unit"],
        "leaders": proposal["leaders"] or [],
        "overdue": any(today > item.due for item in obligations(dossier)),
        "measures_total": len(dossier.measures),
        "measures_done": sum(1 for m in dossier.measures if m["status"] == "done"),
        "implemented": proposal["implemented_at"] is not None,
    }
