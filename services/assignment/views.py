"""Assignment's JSON views: what the routes answer with (the read side; no rules here)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.assignment.domain import AssignmentState, UnitAnswer
from shared.policy import WorkingCalendar


def provisional_dues(dues: list[date | None], calendar: WorkingCalendar) -> bool:
    """暂定日历: whether a due date lies in a year whose official holiday calendar is not known yet."""
    known = [due for due in dues if due is not None]
    return bool(known) and calendar.is_provisional(min(known), max(known))


def key_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "proposal_id": row["proposal_id"],
        "series_id": row["series_id"],
        "supervising_leader": row["supervising_leader"],
        "leading_leader": row["leading_leader"],
        "designated_at": row["designated_at"].isoformat(),
    }


def assignment_view(
    assignment: AssignmentState,
    responses: Mapping[str, UnitAnswer] | None = None,
    *,
    calendar: WorkingCalendar,
) -> dict[str, Any]:
    """An assignment; `provisional_calendar` (with the policy's ``calendar``) says a due date may still
    move because its year's official holiday calendar is not known yet."""
    a = assignment
    return {
        "id": a.id,
        "proposal_id": a.proposal_id,
        "status": a.status.value,
        "form": a.form.value,
        "lead_unit": a.lead_unit,
        "co_units": list(a.co_units),
        "split_units": list(a.split_units),
        "reasons": list(a.reasons),
        "reply_due": a.reply_due.isoformat() if a.reply_due else None,
        "co_opinion_due": a.co_opinion_due.isoformat() if a.co_opinion_due else None,
        "dispute_until": a.dispute_until.isoformat() if a.dispute_until else None,
        "assigned_at": a.assigned_at.isoformat() if a.assigned_at else None,
        "previous_assignment_id": a.previous_assignment_id,
        "provisional_calendar": provisional_dues([a.reply_due, a.co_opinion_due, a.dispute_until], calendar),
        "responses": [
            {"unit": unit, "response": r.response.value, "reason": r.reason, "deemed": r.deemed}
            for unit, r in sorted((responses or {}).items())
        ],
    }
