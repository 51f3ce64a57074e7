"""Progress's use cases on the in-memory unit of work: load → decide → save, with no database.

What a user notices: the stage the proposal shows, the events the other services receive, and that a
refused step leaves nothing behind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.progress import service
from services.progress.domain import (
    DraftReply,
    Evaluate,
    MeasureStatus,
    Occasion,
    ReportProgress,
    ReviewReply,
    Stage,
    UpdateMeasure,
)
from shared.errors import NotFound, NotReady, RuleViolation, StateConflict
from shared.events import (
    Actor,
    DeadlineOverdue,
    EvaluationSubmitted,
    MeasurePlan,
    MeasureUpdated,
    ProgressContent,
    ProgressKind,
    ProgressReported,
    ProposalAssigned,
    ProposalClosed,
    ProposalImplemented,
    RehandlingStarted,
    ReplyApproved,
    ReplyContent,
    Role,
    SuggestionAdoption,
)
from shared.outbox import envelope_for
from shared.policy import WorkingCalendar, default_policy
from tests.progress_fakes import FakeUnitOfWork
from tests.progress_fixtures import lifecycle

POLICY = default_policy()
CALENDAR = WorkingCalendar.from_policy(POLICY)
LEAD = Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj")
COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)
NOW = datetime(2026, 3, 16, 2, tzinfo=UTC)
PHONE = ProgressContent(kind=ProgressKind.PHONE, on=date(2026, 3, 16), text="与提案者电话沟通")


async def assigned(proposal_id: str = "p-0001") -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    for event in lifecycle(proposal_id):
        await service.record(uow, envelope_for(event, "intake"), event)
    return uow


def reply(measure_due: date | None = None) -> ReplyContent:
    return ReplyContent(
        text="答复全文, 已采纳全部建议。",
        classification="A",
        adoptions=[SuggestionAdoption(number=1, adopted=True), SuggestionAdoption(number=2, adopted=True)],
        measures=[MeasurePlan(text="建设平台", owner_unit="dg-zrzyj", due=measure_due)] if measure_due else [],
    )


def by(actor: Actor, now: datetime = NOW, correlation_id: str | None = None) -> Occasion:
    """The occasion of a step `actor` takes at `now`, under the default policy."""
    return Occasion(actor, correlation_id, now, POLICY, CALENDAR)


async def draft(uow: FakeUnitOfWork, content: ReplyContent) -> str:
    """The lead unit's 答复 on p-0001; the new reply's id."""
    step = DraftReply("p-0001", "dg-zrzyj", content)
    await service.carry_out(uow, step, by(LEAD))
    return step.reply_id


async def review(uow: FakeUnitOfWork, reply_id: str, approve: bool, now: datetime = NOW) -> None:
    step = ReviewReply("p-0001", reply_id, approve=approve, reason=None if approve else "请补充资金安排")
    await service.carry_out(uow, step, by(COMMITTEE, now))


async def evaluate(uow: FakeUnitOfWork, signer: str, grade: str, now: datetime = NOW) -> None:
    step = Evaluate("p-0001", handling_grade="satisfied", result_grade=grade)
    await service.carry_out(uow, step, by(Actor(id=signer, role=Role.MEMBER), now))


async def test_consumed_events_fold_into_the_dossier_and_an_early_one_waits() -> None:
    uow = await assigned()
    dossier = uow.dossier("p-0001")
    assert (dossier.stage, dossier.proposal.lead_unit, dossier.proposal.co_units) == (
        Stage.ASSIGNED,
        "dg-zrzyj",
        ("dg-czj",),
    )
    assert [event.TYPE for _, event in uow.timeline][-1] == ProposalAssigned.TYPE
    assert uow.outbox == []  # folding others' events publishes nothing
    [*_, assignment] = lifecycle("p-0009")
    with pytest.raises(NotReady):
        await service.record(uow, envelope_for(assignment, "assignment"), assignment)


async def test_the_first_progress_report_moves_an_assigned_proposal_to_handling() -> None:
    uow = await assigned()
    await service.carry_out(uow, ReportProgress("p-0001", "dg-zrzyj", PHONE), by(LEAD, correlation_id="corr-1"))
    assert uow.dossier("p-0001").stage == Stage.HANDLING
    [(_, event)] = uow.outbox
    assert (event.TYPE, event.unit, event.correlation_id) == (ProgressReported.TYPE, "dg-zrzyj", "corr-1")
    await service.carry_out(uow, ReportProgress("p-0001", "dg-zrzyj", PHONE), by(LEAD))
    assert uow.dossier("p-0001").stage == Stage.HANDLING


async def test_a_refused_step_saves_and_publishes_nothing() -> None:
    uow = await assigned()
    commits = uow.commits
    with pytest.raises(RuleViolation) as refused:
        await service.carry_out(uow, ReportProgress("p-0001", "dg-jtj", PHONE), by(LEAD))
    assert refused.value.rule == "unit_handles_proposal"
    with pytest.raises(NotFound):
        await service.carry_out(uow, ReportProgress("p-0404", "dg-zrzyj", PHONE), by(LEAD))
    assert (uow.commits, uow.outbox, uow.dossier("p-0001").stage) == (commits, [], Stage.ASSIGNED)


async def test_a_returned_reply_takes_its_measures_and_the_approved_redraft_opens_the_evaluation() -> None:
    uow = await assigned()
    first = await draft(uow, reply(date(2026, 9, 30)))
    assert uow.dossier("p-0001").stage == Stage.REPLY_REVIEW
    assert [m.id for m in uow.dossier("p-0001").measures] == [f"{first}-m1"]
    await review(uow, first, approve=False)
    dossier = uow.dossier("p-0001")
    assert (dossier.stage, dossier.measures, dossier.replies[0].review_reason) == (
        Stage.HANDLING,
        [],
        "请补充资金安排",
    )
    second = await draft(uow, reply())
    await review(uow, second, approve=True)
    dossier = uow.dossier("p-0001")
    assert dossier.stage == Stage.ANSWERED
    assert dossier.proposal.evaluation_due is not None and dossier.proposal.answered_at == NOW
    assert uow.types()[-1] == ReplyApproved.TYPE
    with pytest.raises(StateConflict):
        await review(uow, second, approve=True)


async def test_an_unsatisfied_first_proposer_sends_it_to_rehandling_once_then_all_evaluations_close_it() -> None:
    uow = await assigned()
    await review(uow, await draft(uow, reply()), True)
    await evaluate(uow, "m-1", "unsatisfied")
    dossier = uow.dossier("p-0001")
    assert (dossier.stage, dossier.round, dossier.proposal.evaluation_due) == (Stage.HANDLING, 2, None)
    assert uow.types()[-2:] == [EvaluationSubmitted.TYPE, RehandlingStarted.TYPE]
    await review(uow, await draft(uow, reply()), True)
    await evaluate(uow, "m-1", "unsatisfied")
    assert uow.dossier("p-0001").stage == Stage.ANSWERED  # a second round is not handled again
    await evaluate(uow, "m-2", "satisfied")
    assert uow.dossier("p-0001").stage == Stage.CLOSED
    closing_id, closed = uow.outbox[-1]
    assert closed.TYPE == ProposalClosed.TYPE and closed.reason == "all_evaluated"
    assert closing_id == service.domain.closing_id(uow.dossier("p-0001"))


async def test_a_closed_proposal_is_implemented_when_its_last_measure_is_done() -> None:
    uow = await assigned()
    reply_id = await draft(uow, reply(date(2026, 9, 30)))
    await review(uow, reply_id, approve=True)
    for signer in ("m-1", "m-2"):
        await evaluate(uow, signer, "satisfied")
    assert uow.types()[-1] == ProposalClosed.TYPE
    done = UpdateMeasure(
        "p-0001", f"{reply_id}-m1", "dg-zrzyj", MeasureStatus.DONE, "平台已上线", opens_evaluation=False
    )
    await service.carry_out(uow, done, by(LEAD))
    assert uow.types()[-2:] == [MeasureUpdated.TYPE, ProposalImplemented.TYPE]
    assert uow.dossier("p-0001").proposal.implemented_at == NOW


async def test_the_scheduler_sends_each_notice_once_and_closes_when_the_evaluation_window_ends() -> None:
    uow = await assigned()
    await review(uow, await draft(uow, reply()), True)
    due = uow.dossier("p-0001").proposal.evaluation_due
    after = datetime.combine(due + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=2)
    assert await service.tick(uow, after, POLICY, CALENDAR) == 3  # two signers overdue, then 办结
    assert await service.tick(uow, after, POLICY, CALENDAR) == 0
    assert uow.types()[-3:] == [
        DeadlineOverdue.TYPE,
        DeadlineOverdue.TYPE,
        ProposalClosed.TYPE,
    ]
    assert uow.dossier("p-0001").stage == Stage.CLOSED
