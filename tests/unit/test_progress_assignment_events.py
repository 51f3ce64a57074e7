"""Progress reads who handles a proposal from assignment's events, for every form and after 改办."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.progress.domain import Stage, handling_units, next_stage, reply_units
from shared.events import Actor, AssignmentForm, AssignmentReassigned, ProposalAssigned, Role, UnitRef
from tests.progress_records import proposal

DISPATCHER = Actor(id="d-1", role=Role.DISPATCHER)
AT = datetime(2026, 3, 2, 2, tzinfo=UTC)


def unit(unit_id: str) -> UnitRef:
    return UnitRef(id=unit_id, name=unit_id)


def test_split_units_all_reply_and_send_no_co_opinions() -> None:
    assigned = ProposalAssigned(
        proposal_id="p",
        actor=DISPATCHER,
        assignment_id="a",
        form=AssignmentForm.SPLIT,
        lead_unit=unit("dg-jyj"),
        split_units=[unit("dg-wjj"), unit("dg-mzj")],
        reply_due=date(2026, 6, 2),
        dispute_until=date(2026, 3, 9),
        assigned_at=AT,
    )
    units = handling_units(assigned)
    assert units["form"] == "split"
    assert units["co_opinion_due"] is None
    assert reply_units(proposal(**units)) == ["dg-jyj", "dg-wjj", "dg-mzj"]


def test_lead_and_co_units_the_lead_alone_replies() -> None:
    assigned = ProposalAssigned(
        proposal_id="p",
        actor=DISPATCHER,
        assignment_id="a",
        form=AssignmentForm.LEAD_CO,
        lead_unit=unit("dg-zrzyj"),
        co_units=[unit("dg-nyj")],
        reply_due=date(2026, 6, 2),
        co_opinion_due=date(2026, 4, 2),
        dispute_until=date(2026, 3, 9),
        assigned_at=AT,
    )
    units = handling_units(assigned)
    assert (units["lead_unit"], units["co_units"], units["co_opinion_due"]) == (
        "dg-zrzyj",
        ("dg-nyj",),
        date(2026, 4, 2),
    )
    assert reply_units(proposal(**units)) == ["dg-zrzyj"]


def test_a_reassignment_replaces_the_units_and_deadlines() -> None:
    reassigned = AssignmentReassigned(
        proposal_id="p",
        actor=DISPATCHER,
        assignment_id="b",
        previous_assignment_id="a",
        form=AssignmentForm.SINGLE,
        lead_unit=unit("dg-fgj"),
        reply_due=date(2026, 6, 15),
        dispute_until=date(2026, 3, 20),
        assigned_at=AT,
        reason="职能调整",
    )
    units = handling_units(reassigned)
    assert (units["lead_unit"], units["co_units"], units["reply_due"]) == ("dg-fgj", (), date(2026, 6, 15))
    assert next_stage(Stage.ASSIGNED, reassigned) == Stage.ASSIGNED
