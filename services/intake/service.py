"""Intake's use cases, shared by both doors (HTTP and the `proposalflow.submissions` topic).

Each reads as: load the proposal → decide (its method, `domain.Proposal`) → save state and events
(`uow.commit()`, in the door's transaction). Time comes from the caller (`now`), so the cosign window can
be driven by a fake clock in tests. Each returns the id of the proposal it changed; the door answers with
its view (views.py).

Lifecycle: draft → (submit) → awaiting_cosigners (joint proposals) → submitted (in review) →
filed | not_filed | merged | returned (→ edit → resubmit → submitted) ; withdrawn before filing.
Drafts never leave intake: the first event downstream sees of a proposal is always `submitted`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from services.intake import domain
from services.intake.domain import Proposal, ProposalStatus
from services.intake.unit_of_work import UnitOfWork
from shared.errors import StateConflict
from shared.events import Actor, ProposalContent
from shared.policy import Policy, local_date

Clock = Callable[[], datetime]
ReviewKind = Literal["file", "not_file", "merge", "return"]


def system_clock() -> datetime:
    return datetime.now(UTC)


async def submit(
    uow: UnitOfWork,
    content: ProposalContent,
    actor: Actor,
    policy: Policy,
    *,
    via: str,
    correlation_id: str | None,
    proposal_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """提交: store a new proposal and announce it. Raises RuleViolation for a request to fix."""
    now = now or system_clock()
    async with uow:
        proposal = Proposal.submitted(
            proposal_id or str(uuid.uuid4()), content, actor, policy, via=via, correlation_id=correlation_id, now=now
        )
        await uow.add(proposal, drawn=proposal_id is None)
        await uow.commit()
    return proposal.id


async def create_draft(uow: UnitOfWork, changes: dict[str, Any], actor: Actor, *, now: datetime) -> str:
    """草稿: saved by its first proposer, who may edit it until submitting; nothing is published."""
    async with uow:
        proposal = Proposal.draft(str(uuid.uuid4()), changes, actor, now)
        await uow.add(proposal, drawn=True)
        await uow.commit()
    return proposal.id


async def edit(uow: UnitOfWork, proposal_id: str, changes: dict[str, Any], actor: Actor, *, now: datetime) -> str:
    """Edit a draft, or a proposal returned for revision (退回修改)."""
    async with uow:
        proposal = await uow.get(proposal_id)
        proposal.edit(changes, actor, now)
        await uow.commit()
    return proposal_id


async def submit_existing(
    uow: UnitOfWork,
    proposal_id: str,
    actor: Actor,
    policy: Policy,
    *,
    correlation_id: str | None,
    now: datetime,
    changes: dict[str, Any] | None = None,
) -> str:
    """提交 a draft, or resubmit a proposal returned for revision (back to review, cosigners kept).

    `changes` revise it first, in the same step: the event door's 修改后重新提交 carries its revision,
    and a revision the submission refuses is not kept either."""
    async with uow:
        proposal = await uow.get(proposal_id)
        if changes:
            proposal.edit(changes, actor, now)
        proposal.submit(actor, policy, correlation_id=correlation_id, now=now)
        await uow.commit()
    return proposal_id


async def cosign(
    uow: UnitOfWork, proposal_id: str, actor: Actor, policy: Policy, *, correlation_id: str | None, now: datetime
) -> str:
    """联名确认: a named cosigner confirms; when the last one does, the proposal goes to review."""
    async with uow:
        proposal = await uow.get(proposal_id)
        proposal.cosign(actor, policy, correlation_id=correlation_id, now=now)
        await uow.commit()
    return proposal_id


async def close_cosign_windows(uow: UnitOfWork, policy: Policy, *, now: datetime) -> list[str]:
    """The periodic sweep: joint proposals whose 联名确认期 has closed go to review with whoever
    confirmed. One a concurrent request moved first is left to it. Returns the ids moved."""
    today = local_date(now, policy.timezone)
    moved = []
    async with uow:
        for candidate in await uow.awaiting_cosigners(due_before=today):
            proposal = await uow.get(candidate.id)  # loaded afresh if a conflict made the unit of work forget it
            if not proposal.close_cosign_window(today, now):
                continue
            try:
                await uow.commit()
            except StateConflict:
                continue
            moved.append(proposal.id)
    return moved


async def withdraw(
    uow: UnitOfWork, proposal_id: str, actor: Actor, *, reason: str, correlation_id: str | None, now: datetime
) -> str:
    """撤案 by the first proposer before the committee decides."""
    async with uow:
        proposal = await uow.get(proposal_id)
        proposal.withdraw(actor, reason=reason, correlation_id=correlation_id, now=now)
        await uow.commit()
    return proposal_id


async def review(
    uow: UnitOfWork,
    proposal_id: str,
    *,
    decision: ReviewKind,
    reason: str | None,
    actor: Actor,
    policy: Policy,
    correlation_id: str | None,
    now: datetime | None = None,
    ground: str | None = None,
    converted_to_opinion: bool = False,
    into_proposal_id: str | None = None,
) -> str:
    """审查立案: file with a number (立案), refuse on a ground (不予立案, optionally 转意见建议),
    merge into another proposal (并案), or return for revision (退回修改)."""
    now = now or system_clock()
    common: dict[str, Any] = {"reason": reason, "correlation_id": correlation_id, "now": now}
    async with uow:
        if decision == "file":
            uow.expect_filing(proposal_id, now.year)
        proposal = await uow.submitted(proposal_id)
        proposal.may_be_reviewed()
        if decision == "file":
            number = domain.filing_number(now.year, await uow.next_filing_sequence(now.year))
            proposal.file(number, await uow.merged_into(proposal_id), actor, **common)
        elif decision == "not_file":
            proposal.not_file(actor, policy, ground=ground, converted_to_opinion=converted_to_opinion, **common)
        elif decision == "merge":
            into = None
            if into_proposal_id and into_proposal_id != proposal_id:
                into = await uow.find(into_proposal_id)
                if into is not None and into.status == ProposalStatus.DRAFT:
                    into = None
            proposal.merge(into_proposal_id, into, actor, **common)
        else:
            proposal.return_for_revision(actor, **common)
        await uow.commit()
    return proposal_id
