"""Events and helpers shared by the progress tests: a filed, assigned joint proposal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from services.progress import service
from services.progress.unit_of_work import SqlUnitOfWork
from shared.events import (
    Actor,
    AssignmentForm,
    Event,
    KeyProposalDesignated,
    ProposalAssigned,
    ProposalFiled,
    ProposalSubmitted,
    Proposer,
    Role,
    SessionKind,
    Suggestion,
    UnitRef,
)
from shared.outbox import envelope_for
from shared.runtime import ServiceRuntime

COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)
DISPATCHER = Actor(id="d-1", role=Role.DISPATCHER)


@dataclass
class Clock:
    """An injectable clock: tests move it forward by hand."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def lifecycle(
    proposal_id: str,
    *,
    submitted: datetime = datetime(2026, 3, 2, 2, tzinfo=UTC),
    category: str = "经济建设",
    form: AssignmentForm = AssignmentForm.LEAD_CO,
    lead: str = "dg-zrzyj",
    co: tuple[str, ...] = ("dg-czj",),
    reply_due: date = date(2026, 6, 3),
    co_opinion_due: date | None = date(2026, 4, 3),
    filed: bool = True,
    assigned: bool = True,
    key_leader: str | None = None,
    cosigners: tuple[str, ...] = ("m-2",),
) -> list[Event]:
    """The events intake and assignment publish for one proposal with two suggestions (分办: `co` are the
    other replying units)."""
    first = Proposer(id="m-1", name="张三")
    others = [Proposer(id=c, name=f"委员{c}") for c in cosigners]
    found: list[Event] = [
        ProposalSubmitted(
            proposal_id=proposal_id,
            actor=Actor(id="m-1", role=Role.MEMBER),
            title="关于推进全域土地综合整治的建议",
            body="正文",
            category=category,
            session_kind=SessionKind.PLENARY,
            first_proposer=first,
            cosigners=others,
            suggestions=[Suggestion(number=1, text="编制规划"), Suggestion(number=2, text="设立资金")],
            submitted_at=submitted,
        )
    ]
    if filed:
        found.append(
            ProposalFiled(
                proposal_id=proposal_id,
                actor=COMMITTEE,
                filing_number=f"2026-{proposal_id[-4:]:0>4}",
                title="关于推进全域土地综合整治的建议",
                category=category,
                first_proposer=first,
                cosigners=others,
                suggestion_count=2,
                filed_at=submitted,
            )
        )
    if filed and assigned:
        found.append(
            ProposalAssigned(
                proposal_id=proposal_id,
                actor=DISPATCHER,
                assignment_id=f"a-{proposal_id}",
                form=form,
                lead_unit=UnitRef(id=lead, name=lead),
                co_units=[UnitRef(id=unit, name=unit) for unit in co] if form != AssignmentForm.SPLIT else [],
                split_units=[UnitRef(id=unit, name=unit) for unit in co] if form == AssignmentForm.SPLIT else [],
                reply_due=reply_due,
                co_opinion_due=co_opinion_due if form == AssignmentForm.LEAD_CO else None,
                dispute_until=date(2026, 3, 10),
                assigned_at=submitted,
            )
        )
    if key_leader:
        found.append(KeyProposalDesignated(proposal_id=proposal_id, actor=COMMITTEE, supervising_leader=key_leader))
    return found


async def feed(runtime: ServiceRuntime, events: list[Event]) -> None:
    """Apply events as if consumed from intake's and assignment's topics."""
    async with runtime.transaction() as conn:
        for event in events:
            await service.record(SqlUnitOfWork(conn), envelope_for(event, "intake"), event)
