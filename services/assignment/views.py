"""Assignment's JSON views: what the routes answer with (the read side; no rules here)."""

from __future__ import annotations

from datetime import date
from typing import Any

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
    row: dict[str, Any],
    responses: dict[str, dict[str, Any]] | None = None,
    *,
    calendar: WorkingCalendar,
) -> dict[str, Any]:
    """An assignment; `provisional_calendar` (with the policy's ``calendar``) says a due date may still
    move because its year's official holiday calendar is not known yet."""
    return {
        "id": row["id"],
        "proposal_id": row["proposal_id"],
        "status": row["status"],
        "form": row["form"],
        "lead_unit": row["lead_unit"],
        "co_units": row["co_units"],
        "split_units": row["split_units"] or [],
        "reasons": row["reasons"],
        "reply_due": row["reply_due"].isoformat() if row["reply_due"] else None,
        "co_opinion_due": row["co_opinion_due"].isoformat() if row["co_opinion_due"] else None,
        "dispute_until": row["dispute_until"].isoformat() if row["dispute_until"] else None,
        "assigned_at": row["assigned_at"].isoformat() if row["assigned_at"] else None,
        "previous_assignment_id": row["previous_assignment_id"],
        "provisional_calendar": provisional_dues(
            [row["reply_due"], row["co_opinion_due"], row["dispute_until"]], calendar
        ),
        "responses": [
            {"unit": unit, "response": r["response"], "reason": r["reason"], "deemed": r["deemed"]}
            for unit, r in sorted((responses or {}).items())
        ],
    }
