"""Assignment's use cases on the in-memory unit of work: load → decide → save, with no database.

What a user notices: the routing the dispatcher is offered, the deadlines units get, the answers that
settle an assignment, and that a refused step leaves nothing behind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.assignment import service
from services.assignment.catalogs import load_routing
from services.assignment.domain import AssignmentStatus, Route
from services.assignment.service import Context, Router
from shared.errors import NotFound, NotYours, StateConflict
from shared.events import (
    Actor,
    AssignmentAccepted,
    AssignmentDisputed,
    AssignmentDisputeUpheld,
    AssignmentReassigned,
    AssignmentSuggested,
    ProposalAssigned,
    ProposalFiled,
    ProposalSubmitted,
    Proposer,
    Role,
    SessionKind,
    Suggestion,
)
from shared.policy import WorkingCalendar, default_policy
from tests.assignment_fakes import FakeUnitOfWork

POLICY = default_policy()
CTX = Context(POLICY, WorkingCalendar.from_policy(POLICY), Router())
DISPATCHER = Actor(id="d-1", role=Role.DISPATCHER)
COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)
# Monday 2026-03-02, 10:00 in Beijing.
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def unit(unit_id: str) -> Actor:
    return Actor(id=f"u-{unit_id}", role=Role.UNIT, unit=unit_id)


async def filed(uow: FakeUnitOfWork, proposal_id: str = "p-1", title: str = "关于推进全域土地综合整治的建议") -> None:
    proposer = Proposer(id="m-1", name="张委员")
    await service.on_submitted(
        uow,
        ProposalSubmitted(
            proposal_id=proposal_id,
            actor=Actor(id="m-1", role=Role.MEMBER),
            title=title,
            body="建议自然资源部门统筹推进全域土地综合整治, 盘活存量建设用地。",
            category="经济建设",
            session_kind=SessionKind.PLENARY,
            first_proposer=proposer,
            suggestions=[Suggestion(number=1, text="编制整治规划")],
            submitted_at=START,
        ),
    )
    event = ProposalFiled(
        proposal_id=proposal_id,
        actor=COMMITTEE,
        filing_number="2026-0001",
        title=title,
        category="经济建设",
        first_proposer=proposer,
        suggestion_count=1,
        filed_at=START,
    )
    await service.on_filed(uow, event, CTX, START)


async def assigned(lead: str = "dg-zrzyj", co: tuple[str, ...] = ()) -> FakeUnitOfWork:
    uow = FakeUnitOfWork(load_routing())
    await filed(uow)
    override = Route(lead, co, ("交办机关调整",))
    await service.assign(uow, "p-1", override, DISPATCHER, "corr-1", CTX, START)
    return uow


async def test_a_filed_proposal_is_suggested_once_and_confirmed_with_its_deadlines() -> None:
    uow = FakeUnitOfWork(load_routing())
    await filed(uow)
    await filed(uow)  # the same event again: one suggestion
    assert uow.types() == [AssignmentSuggested.TYPE]
    view = await service.assign(uow, "p-1", None, DISPATCHER, "corr-1", CTX, START)
    assert view["status"] == "assigned" and view["reply_due"] == "2026-06-02"
    [_, (_, assignment)] = uow.outbox
    assert assignment.TYPE == ProposalAssigned.TYPE and assignment.correlation_id == "corr-1"
    assert assignment.dispute_until.isoformat() == view["dispute_until"]
    with pytest.raises(StateConflict) as again:
        await service.assign(uow, "p-1", None, DISPATCHER, None, CTX, START)
    assert again.value.rule == "confirm_only_suggested"
    with pytest.raises(NotFound):
        await service.assign(uow, "p-404", None, DISPATCHER, None, CTX, START)


async def test_only_a_unit_of_the_assignment_answers_and_all_accepting_settles_it() -> None:
    uow = await assigned(co=("dg-czj",))
    published = len(uow.outbox)
    with pytest.raises(NotYours):
        await service.respond(uow, "p-1", unit("dg-jyj"), dispute_reason=None, correlation_id=None, ctx=CTX, now=START)
    assert len(uow.outbox) == published
    first = await service.respond(
        uow, "p-1", unit("dg-zrzyj"), dispute_reason=None, correlation_id=None, ctx=CTX, now=START
    )
    assert first["status"] == "assigned"
    second = await service.respond(
        uow, "p-1", unit("dg-czj"), dispute_reason=None, correlation_id=None, ctx=CTX, now=START
    )
    assert second["status"] == "accepted"
    assert [r["unit"] for r in second["responses"]] == ["dg-czj", "dg-zrzyj"]
    assert uow.types()[-2:] == [AssignmentAccepted.TYPE, AssignmentAccepted.TYPE]


async def test_a_dispute_is_upheld_or_the_proposal_reassigned_with_fresh_deadlines() -> None:
    uow = await assigned()
    reason = "此事项属交通部门职责"
    disputed = await service.respond(
        uow, "p-1", unit("dg-zrzyj"), dispute_reason=reason, correlation_id=None, ctx=CTX, now=START
    )
    assert disputed["status"] == "disputed" and uow.types()[-1] == AssignmentDisputed.TYPE
    upheld = await service.uphold(uow, "p-1", "维持原交办", DISPATCHER, None, CTX, START)
    assert upheld["status"] == "accepted" and upheld["responses"][0]["response"] == "upheld"
    assert uow.types()[-1] == AssignmentDisputeUpheld.TYPE

    uow = await assigned()
    await service.respond(uow, "p-1", unit("dg-zrzyj"), dispute_reason=reason, correlation_id=None, ctx=CTX, now=START)
    later = START + timedelta(days=7)
    new = await service.reassign(uow, "p-1", Route("dg-jtj", ()), "改由交通部门办理", DISPATCHER, None, CTX, later)
    assert (new["lead_unit"], new["status"], new["responses"]) == ("dg-jtj", "assigned", [])
    assert new["reply_due"] > "2026-06-02"
    superseded = [row for row in uow.assignments.values() if row["id"] != new["id"]]
    assert [row["status"] for row in superseded] == [AssignmentStatus.SUPERSEDED.value]
    assert uow.types()[-1] == AssignmentReassigned.TYPE


async def test_when_the_dispute_window_closes_silent_units_are_deemed_to_accept_once() -> None:
    uow = await assigned(co=("dg-czj",))
    await service.respond(uow, "p-1", unit("dg-zrzyj"), dispute_reason=None, correlation_id=None, ctx=CTX, now=START)
    until = date.fromisoformat(uow.assignments[next(iter(uow.assignments))]["dispute_until"].isoformat())
    assert await service.accept_lapsed(uow, CTX, datetime.combine(until, datetime.min.time(), UTC)) == 0
    after = datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=2)
    assert await service.accept_lapsed(uow, CTX, after) == 1
    assert await service.accept_lapsed(uow, CTX, after) == 0
    event_id, deemed = uow.outbox[-1]
    assert deemed.TYPE == AssignmentAccepted.TYPE and deemed.deemed and deemed.unit.id == "dg-czj"
    [row] = uow.assignments.values()
    assert row["status"] == "accepted" and uow.responses[row["id"]]["dg-czj"]["deemed"]
    assert event_id == service.domain.deemed_accept_id(row["id"], "dg-czj")
