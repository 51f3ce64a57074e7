"""Progress's use cases: fold every event of a proposal into its read model and timeline, and the
handling steps progress owns (办理进展, 会办意见, 答复, 办复审查, 评价, 重新办理, 办结, 举措, 督办).

A handling step reads as: load the dossier → decide (`Dossier.take`, in domain.py) → save state and
events (`uow.commit()`, in the door's transaction), all in `carry_out`. A door (an HTTP route in api.py,
a Kafka handler in handlers.py) builds the step's command and its `Occasion` (who, when, under which
rules) and calls it; the scheduler's pass (`tick`) and `recompute_deadlines` build their own occasion.
The events progress publishes are applied to its own read model as they are recorded (`Dossier.apply`),
since progress is the single writer of `proposalflow.handling`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from services.progress import domain
from services.progress.domain import Dossier, HandlingStep, Occasion
from services.progress.unit_of_work import UnitOfWork
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import Actor, Event, HandlingDeadlineChanged, ProposalSubmitted, Rejection
from shared.policy import Policy, WorkingCalendar


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


async def carry_out(uow: UnitOfWork, step: HandlingStep, occasion: Occasion) -> None:
    """One handling step (办理进展, 会办意见, 答复, 办复审查, 评价, 举措落实, 落实评价, 新举措, 督办) on its
    proposal's dossier: load it, let it decide (`Dossier.take`), save its state and events together."""
    async with uow:
        dossier = await uow.get(step.proposal_id)
        dossier.take(step, occasion)
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
    occasion = Occasion(actor, None, now, policy, calendar)
    async with uow:
        dossiers = [d for d in await uow.open_dossiers() if d.stage in (*domain.HANDLING_STAGES, domain.Stage.ANSWERED)]
        changed = [event for d in dossiers for event in d.recompute_deadlines(reason, occasion)]
        await uow.commit()
    first_round = [d.id for d in dossiers if d.stage in domain.HANDLING_STAGES and d.round == 1]
    return Recomputed(changed, [d.id for d in dossiers], first_round)


async def tick(uow: UnitOfWork, now: datetime, policy: Policy, calendar: WorkingCalendar) -> int:
    """The scheduler's one pass: 到期预警 and 逾期 notices, and 办结 when a 评价期 has closed.

    Every event has a deterministic id; one already published is skipped, so replicas and reruns
    make one effect. Returns how many events were staged.
    """
    occasion = Occasion(domain.SCHEDULER, None, now, policy, calendar)
    today = occasion.today
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
                dossier.close("evaluation_window_closed", occasion)
                staged += 1
        staged += _implementation_tick(dossiers, occasion)
        await uow.commit()
    return staged


def _implementation_tick(dossiers: list[Dossier], occasion: Occasion) -> int:
    """落实评价 the scheduler looks after: opened when 落实 came without it (e.g. through a command door),
    closed when its window is over. Both have deterministic ids (the state also says they were done)."""
    staged = 0
    for dossier in dossiers:
        if domain.implementation_evaluation_due_to_open(dossier):
            dossier.open_implementation_evaluation(occasion)
            staged += 1
        elif domain.implementation_evaluation_window_closed(dossier, occasion.today):
            dossier.close_implementation_evaluation("evaluation_window_closed", occasion)
            staged += 1
    return staged
