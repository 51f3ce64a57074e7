"""Assignment's rows and its aggregate's typed state, both ways: an `assignments` row becomes an
`AssignmentState` and a `unit_responses` row a `UnitAnswer`, and what the unit of work saves is written
back as the table's row (sequences as JSON lists, enums as their values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.assignment.domain import AssignmentState, AssignmentStatus, UnitAnswer, UnitResponse
from shared.events import AssignmentForm

Row = dict[str, Any]


def assignment_state(row: Mapping[str, Any]) -> AssignmentState:
    return AssignmentState(
        id=row["id"],
        proposal_id=row["proposal_id"],
        status=AssignmentStatus(row["status"]),
        form=AssignmentForm(row["form"]),
        lead_unit=row["lead_unit"],
        co_units=tuple(row["co_units"]),
        reasons=tuple(row["reasons"]),
        suggested_at=row["suggested_at"],
        reply_due=row["reply_due"],
        co_opinion_due=row["co_opinion_due"],
        dispute_until=row["dispute_until"],
        assigned_at=row["assigned_at"],
        split_units=tuple(row["split_units"] or ()),
        previous_assignment_id=row["previous_assignment_id"],
    )


def unit_answer(row: Mapping[str, Any]) -> UnitAnswer:
    return UnitAnswer(
        assignment_id=row["assignment_id"],
        unit=row["unit"],
        response=UnitResponse(row["response"]),
        reason=row["reason"],
        deemed=bool(row["deemed"]),
        actor_id=row["actor_id"],
        at=row["at"],
    )


def unit_answers(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, UnitAnswer]:
    """A `store.responses_of` answer (rows by unit) as answers by unit."""
    return {unit: unit_answer(row) for unit, row in rows.items()}
