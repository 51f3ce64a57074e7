"""Progress's use cases: fold every event of a proposal into its read model and timeline, and the
handling steps progress owns (办理进展, 会办意见, 答复, 办复审查, 评价, 重新办理, 办结, 举措, 督办).

Each reads as: load the dossier → decide (its method, in domain.py) → save state and events
(`uow.commit()`, in the door's transaction). HTTP routes (api.py) and the unit-report handler
(handlers.py) call the same functions. The events progress publishes are applied to its own read model
as they are recorded (`Dossier.apply`), since progress is the single writer of `proposalflow.handling`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import NamedTuple

from services.progress import domain
from services.progress.domain import Dossier, MeasureStatus
from services.progress.unit_of_work import UnitOfWork
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import (
    Actor,
    Event,
    HandlingDeadlineChanged,
    ProgressContent,
    ProposalSubmitted,
    Rejection,
    ReplyContent,
)
from shared.policy import Policy, WorkingCalendar, local_date


async def record(uow: UnitOfWork, envelope: Envelope, event: Event) -> None:
    """Apply one consumed event: the first one of a proposal must be `submitted`; others wait for it.

    A `…rejected` (a refused submission, a unit's refused 签收 or 异议) changes nothing of a proposal and is
    not kept: its sender hears of it on the topic, the audit log keeps it. Parked for a proposal unknown
    here, it would wait forever, and hold up every event of a proposal later submitted under that id."""
    if isinstance(event, Rejection):
        return
    async with uow:
        dossier = await uow.lifecycle(event.proposal_id)
        if dossier is None:
            if not isinstance(event, ProposalSubmitted):
                raise NotReady(f"proposal {event.proposal_id} not known yet (waiting for its submitted event)")
            uow.add(Dossier.submitted(event, envelope.time))
        else:
            dossier.apply(event, envelope.time)
        uow.consumed(envelope, event)
        await uow.commit()


async def report_progress(
    uow: UnitOfWork,
    proposal_id: str,
    unit: str | None,
    content: ProgressContent,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """办理进展: a handling unit records contact with the proposer, a meeting, research…"""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.report_progress(unit, content, actor, correlation_id, now)
        await uow.commit()


async def submit_co_opinion(
    uow: UnitOfWork,
    proposal_id: str,
    unit: str | None,
    text: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """会办意见: a co-handling unit's opinion to the lead unit."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.submit_co_opinion(unit, text, actor, correlation_id, now)
        await uow.commit()


async def draft_reply(
    uow: UnitOfWork,
    proposal_id: str,
    unit: str | None,
    content: ReplyContent,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
) -> str:
    """答复: the lead unit (each unit, for 分办) drafts its reply for 办复审查. Returns the reply id."""
    reply_id = str(uuid.uuid4())
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.draft_reply(reply_id, unit, content, actor, correlation_id, now, policy)
        await uow.commit()
    return reply_id


async def review_reply(
    uow: UnitOfWork,
    proposal_id: str,
    reply_id: str,
    *,
    approve: bool,
    reason: str | None,
    public: bool | None,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> None:
    """办复审查: the committee approves a reply (it goes to the proposers) or returns it with a reason."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.review_reply(
            reply_id,
            approve=approve,
            reason=reason,
            public=public,
            actor=actor,
            correlation_id=correlation_id,
            now=now,
            policy=policy,
            calendar=calendar,
        )
        await uow.commit()


async def evaluate(
    uow: UnitOfWork,
    proposal_id: str,
    signer: str,
    *,
    handling_grade: str,
    result_grade: str,
    comment: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> None:
    """评价; then 重新办理 (unsatisfied first proposer) or 办结 (every signer has evaluated)."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.evaluate(
            signer,
            handling_grade=handling_grade,
            result_grade=result_grade,
            comment=comment,
            actor=actor,
            correlation_id=correlation_id,
            now=now,
            policy=policy,
            calendar=calendar,
        )
        await uow.commit()


async def update_measure(
    uow: UnitOfWork,
    proposal_id: str,
    measure_id: str,
    *,
    status: MeasureStatus,
    note: str,
    unit: str | None,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy | None = None,
    calendar: WorkingCalendar | None = None,
) -> None:
    """举措落实: its owner unit (or the lead unit) moves a measure on; all settled after 办结 = 落实, which
    opens the 落实评价 (with the policy; else the scheduler's next pass opens it)."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.update_measure(
            measure_id,
            status=status,
            note=note,
            unit=unit,
            actor=actor,
            correlation_id=correlation_id,
            now=now,
            policy=policy,
            calendar=calendar,
        )
        await uow.commit()


async def record_supervision(
    uow: UnitOfWork,
    proposal_id: str,
    *,
    kind: str,
    on: date,
    text: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """督办: a leader's meeting, visit or instruction on a key proposal it supervises."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.record_supervision(kind=kind, on=on, text=text, actor=actor, correlation_id=correlation_id, now=now)
        await uow.commit()


class Recomputed(NamedTuple):
    """What `recompute_deadlines` did."""

    changed: list[HandlingDeadlineChanged]
    """The deadlines progress owns that moved (each event is in the outbox)."""
    open_proposals: list[str]
    """Every proposal still handled or answered (a closed one keeps its dates)."""
    first_round: list[str]
    """The open proposals in their first round of handling: their deadlines are assignment's (交办)."""


async def recompute_deadlines(
    uow: UnitOfWork, policy: Policy, calendar: WorkingCalendar, actor: Actor, reason: str, now: datetime
) -> Recomputed:
    """期限调整 after the working-day calendar changed (a year declared in the policy): the deadlines
    progress owns (重新办理, 评价期) of every open proposal, recomputed and, where they moved, saved with
    a `HandlingDeadlineChanged` in the outbox. Running it again changes nothing."""
    async with uow:
        dossiers = [d for d in await uow.open_dossiers() if d.stage in (*domain.HANDLING_STAGES, domain.Stage.ANSWERED)]
        changed = [event for d in dossiers for event in d.recompute_deadlines(policy, calendar, actor, reason, now)]
        await uow.commit()
    first_round = [d.id for d in dossiers if d.stage in domain.HANDLING_STAGES and d.round == 1]
    return Recomputed(changed, [d.id for d in dossiers], first_round)


async def tick(uow: UnitOfWork, now: datetime, policy: Policy, calendar: WorkingCalendar) -> int:
    """The scheduler's one pass: 到期预警 and 逾期 notices, and 办结 when a 评价期 has closed.

    Every event has a deterministic id; one already published is skipped, so replicas and reruns
    make one effect. Returns how many events were staged.
    """
    today = local_date(now, policy.timezone)
    staged = 0
    async with uow:
        dossiers = await uow.open_dossiers()
        by_id = {dossier.id: dossier for dossier in dossiers}
        for notice, notice_id in domain.due_notices(dossiers, today, policy, calendar):
            if not await uow.published(notice_id):
                by_id[notice.proposal_id].send_notice(notice, notice_id, now)
                staged += 1
        for dossier in dossiers:
            if domain.evaluation_window_closed(dossier, today) and not await uow.published(domain.closing_id(dossier)):
                dossier.close("evaluation_window_closed", domain.SCHEDULER, None, now)
                staged += 1
        staged += _implementation_tick(dossiers, today, now, policy, calendar)
        await uow.commit()
    return staged


def _implementation_tick(
    dossiers: list[Dossier], today: date, now: datetime, policy: Policy, calendar: WorkingCalendar
) -> int:
    """落实评价 the scheduler looks after: opened when 落实 came without it (e.g. through a command door),
    closed when its window is over. Both have deterministic ids (the state also says they were done)."""
    staged = 0
    for dossier in dossiers:
        if domain.implementation_evaluation_due_to_open(dossier):
            dossier.open_implementation_evaluation(domain.SCHEDULER, None, now, policy, calendar)
            staged += 1
        elif domain.implementation_evaluation_window_closed(dossier, today):
            dossier.close_implementation_evaluation("evaluation_window_closed", domain.SCHEDULER, None, now, policy)
            staged += 1
    return staged


async def evaluate_implementation(
    uow: UnitOfWork,
    proposal_id: str,
    signer: str,
    *,
    grade: str,
    comment: str,
    reopen: list[str],
    new_measure: bool,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> None:
    """落实评价: a signer grades what was implemented; an unsatisfied first proposer reopens measures."""
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.evaluate_implementation(
            signer,
            grade=grade,
            comment=comment,
            reopen=reopen,
            new_measure=new_measure,
            actor=actor,
            correlation_id=correlation_id,
            now=now,
            policy=policy,
            calendar=calendar,
        )
        await uow.commit()


async def add_measure(
    uow: UnitOfWork,
    proposal_id: str,
    *,
    unit: str | None,
    text: str,
    due: date,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
) -> str:
    """新举措: the lead unit answers a 落实评价's request for a new measure. Returns the measure id."""
    measure_id = f"{uuid.uuid4()}-new"
    async with uow:
        dossier = await uow.get(proposal_id)
        dossier.add_measure(
            measure_id,
            unit=unit,
            text=text,
            due=due,
            actor=actor,
            correlation_id=correlation_id,
            now=now,
            policy=policy,
        )
        await uow.commit()
    return measure_id
