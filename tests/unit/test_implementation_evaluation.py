"""落实评价 on the in-memory unit of work: once every measure is settled the signers judge what was
implemented; an unsatisfied first proposer reopens measures (or asks for a new one), within the
policy's limit on rounds. What a user notices: the events the others receive, the measures' status and
due dates, what is still owed, and the clear refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.progress import domain, service, views
from services.progress.domain import (
    AddMeasure,
    EvaluateImplementation,
    ImplementationEvaluation,
    MeasureStatus,
    UpdateMeasure,
)
from shared.errors import RuleViolation, StateConflict
from shared.events import (
    Actor,
    DeadlineApproaching,
    ImplementationEvaluated,
    ImplementationEvaluationClosed,
    ImplementationEvaluationOpened,
    MeasureAdded,
    MeasurePlan,
    MeasureReopened,
    MeasureRequested,
    MeasureUpdated,
    ProposalClosed,
    ProposalImplemented,
    ReplyContent,
    Role,
    SuggestionAdoption,
)
from shared.policy import WorkingCalendar, default_policy
from tests.progress_fakes import FakeUnitOfWork
from tests.unit.test_progress_use_cases import assigned, by, draft, evaluate, review

POLICY = default_policy()
CALENDAR = WorkingCalendar.from_policy(POLICY)
LEAD = Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj")
NOW = datetime(2026, 3, 16, 2, tzinfo=UTC)  # Monday
LATER = datetime(2026, 9, 1, 2, tzinfo=UTC)  # Tuesday


def two_measures() -> ReplyContent:
    return ReplyContent(
        text="答复全文: 已编制规划并设立资金。",
        classification="B",
        adoptions=[SuggestionAdoption(number=1, adopted=True), SuggestionAdoption(number=2, adopted=True)],
        measures=[
            MeasurePlan(text="编制整治规划", owner_unit="dg-zrzyj", due=date(2026, 9, 30)),
            MeasurePlan(text="设立专项资金", owner_unit="dg-czj", due=date(2026, 12, 31)),
        ],
    )


async def closed_with_measures() -> tuple[FakeUnitOfWork, list[str]]:
    uow = await assigned()
    reply_id = await draft(uow, two_measures())
    await review(uow, reply_id, approve=True)
    for signer in ("m-1", "m-2"):
        await evaluate(uow, signer, "satisfied")
    return uow, [f"{reply_id}-m1", f"{reply_id}-m2"]


async def settle(uow: FakeUnitOfWork, measure_id: str, now: datetime = LATER, *, opens_evaluation: bool = True) -> None:
    step = UpdateMeasure(
        "p-0001", measure_id, "dg-zrzyj", MeasureStatus.DONE, "已完成", opens_evaluation=opens_evaluation
    )
    await service.carry_out(uow, step, by(LEAD, now))


async def judge(
    uow: FakeUnitOfWork,
    signer: str,
    grade: str,
    *,
    reopen: list[str] | None = None,
    new_measure: bool = False,
    now: datetime = LATER,
) -> None:
    comment = "资金尚未到位" if grade == "unsatisfied" else ""
    step = EvaluateImplementation("p-0001", grade, comment, reopen=reopen or [], new_measure=new_measure)
    await service.carry_out(uow, step, by(Actor(id=signer, role=Role.MEMBER), now))


async def test_settling_the_last_measure_asks_every_signer_to_evaluate_the_implementation() -> None:
    uow, (first, second) = await closed_with_measures()
    await settle(uow, first)
    assert ImplementationEvaluationOpened.TYPE not in uow.types()  # one measure still open
    await settle(uow, second)
    assert uow.types()[-3:] == [MeasureUpdated.TYPE, ProposalImplemented.TYPE, ImplementationEvaluationOpened.TYPE]
    opened = uow.outbox[-1][1]
    assert isinstance(opened, ImplementationEvaluationOpened)
    # 15 working days from Tue 2026-09-01, with Sunday 09-20 a working day (调休 for National Day) → Mon 09-21.
    assert (opened.round, opened.evaluation_due, opened.signers, opened.last_round) == (
        1,
        date(2026, 9, 21),
        ["m-1", "m-2"],
        False,
    )
    owed = [(o.kind, o.signer_id) for o in domain.obligations(uow.dossier("p-0001"))]
    assert owed == [("implementation_evaluation", "m-1"), ("implementation_evaluation", "m-2")]


async def test_an_unsatisfied_first_proposer_reopens_a_measure_then_the_second_round_is_final() -> None:
    uow, (first, second) = await closed_with_measures()
    await settle(uow, first)
    await settle(uow, second)
    with pytest.raises(RuleViolation) as cosigner:
        await judge(uow, "m-2", "unsatisfied", reopen=[second])
    assert cosigner.value.rule == "reopen_by_first_proposer"
    with pytest.raises(RuleViolation) as silent:
        await judge(uow, "m-1", "unsatisfied")
    assert silent.value.rule == "unsatisfied_names_measures"

    await judge(uow, "m-1", "unsatisfied", reopen=[second])
    assert uow.types()[-2:] == [ImplementationEvaluated.TYPE, MeasureReopened.TYPE]
    reopened = uow.outbox[-1][1]
    assert isinstance(reopened, MeasureReopened)
    # The new due date is the policy's rehandling deadline from the evaluation: 1 month is 10-01, in the
    # National Day holiday, so the next working day, 10-08.
    assert (reopened.unit, reopened.due, reopened.reason) == ("dg-czj", date(2026, 10, 8), "资金尚未到位")
    dossier = uow.dossier("p-0001")
    measure = next(m for m in dossier.measures if m.id == second)
    assert (measure.status, measure.due, measure.reopened, measure.done_at) == (
        "in_progress",
        date(2026, 10, 8),
        1,
        None,
    )
    assert dossier.proposal.implemented_at is None
    assert dossier.proposal.implementation_evaluation == ImplementationEvaluation.REOPENED
    with pytest.raises(StateConflict) as closed:
        await judge(uow, "m-2", "satisfied")
    assert closed.value.rule == "implementation_evaluation_open"

    await settle(uow, second, LATER + timedelta(days=14))
    opened = uow.outbox[-1][1]
    assert isinstance(opened, ImplementationEvaluationOpened) and (opened.round, opened.last_round) == (2, True)
    with pytest.raises(StateConflict) as limit:
        await judge(uow, "m-1", "unsatisfied", reopen=[second], now=LATER + timedelta(days=14))
    assert limit.value.rule == "implementation_rounds_limit"
    await judge(uow, "m-1", "satisfied", now=LATER + timedelta(days=14))
    with pytest.raises(StateConflict) as twice:
        await judge(uow, "m-1", "satisfied", now=LATER + timedelta(days=14))
    assert twice.value.rule == "implementation_evaluated_once"
    await judge(uow, "m-2", "basically_satisfied", now=LATER + timedelta(days=14))
    closed_event = uow.outbox[-1][1]
    assert isinstance(closed_event, ImplementationEvaluationClosed)
    assert (closed_event.round, closed_event.reason, closed_event.evaluations, closed_event.satisfied) == (
        2,
        "all_evaluated",
        2,
        2,
    )
    assert domain.obligations(uow.dossier("p-0001")) == []


async def test_an_unsatisfied_key_proposal_names_its_supervising_leader() -> None:
    uow, (first, second) = await closed_with_measures()
    key = uow.dossier("p-0001")
    key.proposal = replace(key.proposal, is_key=True, leaders=("leader-1",))
    await settle(uow, first)
    await settle(uow, second)
    await judge(uow, "m-2", "unsatisfied")  # a cosigner's unsatisfied grade is recorded, reopens nothing
    evaluated = uow.outbox[-1][1]
    assert isinstance(evaluated, ImplementationEvaluated)
    assert (evaluated.satisfied, evaluated.supervising_leader, evaluated.reopened_measures) == (False, "leader-1", [])
    await judge(uow, "m-1", "unsatisfied", reopen=[first])
    reopened = uow.outbox[-1][1]
    assert isinstance(reopened, MeasureReopened) and reopened.supervising_leader == "leader-1"


async def test_asking_for_a_new_measure_holds_the_implementation_until_the_lead_unit_commits_to_one() -> None:
    uow, (first, second) = await closed_with_measures()
    await settle(uow, first)
    await settle(uow, second)
    await judge(uow, "m-1", "unsatisfied", new_measure=True)
    requested = uow.outbox[-1][1]
    assert isinstance(requested, MeasureRequested) and (requested.unit, requested.due) == (
        "dg-zrzyj",
        date(2026, 10, 8),
    )
    assert [(o.kind, o.unit) for o in domain.obligations(uow.dossier("p-0001"))] == [("new_measure", "dg-zrzyj")]
    co_unit = Actor(id="u-2", role=Role.UNIT, unit="dg-czj")
    with pytest.raises(RuleViolation) as not_lead:
        await service.carry_out(uow, AddMeasure("p-0001", "dg-czj", "x", date(2026, 11, 30)), by(co_unit, LATER))
    assert not_lead.value.rule == "new_measure_by_lead_unit"
    adding = AddMeasure("p-0001", "dg-zrzyj", "增设督查专班", date(2026, 11, 30))
    await service.carry_out(uow, adding, by(LEAD, LATER))
    added = adding.measure_id
    assert uow.types()[-1] == MeasureAdded.TYPE
    dossier = uow.dossier("p-0001")
    assert dossier.proposal.measure_request_due is None and dossier.proposal.implemented_at is None
    assert [(o.kind, o.measure_id) for o in domain.obligations(dossier)] == [("measure", added)]
    await settle(uow, added)
    assert uow.types()[-2:] == [ProposalImplemented.TYPE, ImplementationEvaluationOpened.TYPE]


async def test_the_scheduler_opens_a_missed_evaluation_warns_the_signers_and_closes_the_window() -> None:
    uow, (first, second) = await closed_with_measures()
    await settle(uow, first, opens_evaluation=False)
    await settle(uow, second, opens_evaluation=False)  # left to the scheduler, as for an older dossier
    assert uow.types()[-1] == ProposalImplemented.TYPE
    assert await service.tick(uow, LATER, POLICY, CALENDAR) == 1
    assert uow.types()[-1] == ImplementationEvaluationOpened.TYPE
    due = uow.dossier("p-0001").proposal.implementation_evaluation_due
    warned = datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=2)
    await judge(uow, "m-1", "satisfied", now=warned - timedelta(days=3))
    assert await service.tick(uow, warned, POLICY, CALENDAR) == 1
    notice = uow.outbox[-1][1]
    assert isinstance(notice, DeadlineApproaching)
    assert (notice.kind, notice.signer_id, notice.due) == ("implementation_evaluation", "m-2", due)
    after = warned + timedelta(days=1)
    assert await service.tick(uow, after, POLICY, CALENDAR) == 2  # m-2 overdue, then the round closes
    closed = uow.outbox[-1][1]
    assert isinstance(closed, ImplementationEvaluationClosed)
    assert (closed.reason, closed.evaluations, closed.satisfied) == ("evaluation_window_closed", 1, 1)
    assert await service.tick(uow, after, POLICY, CALENDAR) == 0
    with pytest.raises(StateConflict):
        await judge(uow, "m-2", "satisfied", now=after)


async def test_a_measure_due_next_year_shows_as_carried_over_with_when_it_was_promised_and_done() -> None:
    uow = await assigned()
    content = two_measures()
    content.measures[1] = MeasurePlan(text="设立专项资金", owner_unit="dg-czj", due=date(2027, 3, 31))
    reply_id = await draft(uow, content)
    approved_at = NOW + timedelta(hours=3)
    await review(uow, reply_id, approve=True, now=approved_at)
    dossier = uow.dossier("p-0001")
    steps = views.open_steps(dossier, NOW.date(), CALENDAR, POLICY.timezone)
    assert [(s["measure_id"], s["carried_over"]) for s in steps if s["kind"] == "measure"] == [
        (f"{reply_id}-m1", False),
        (f"{reply_id}-m2", True),  # 跨年度落实: a 2026 proposal's measure due in 2027
    ]
    await settle(uow, f"{reply_id}-m2", LATER)
    shown = views.proposal_view(uow.dossier("p-0001"), [], LATER.date(), CALENDAR, POLICY.timezone)["measures"]
    carried = next(m for m in shown if m["id"] == f"{reply_id}-m2")
    assert (carried["carried_over"], carried["promised_at"], carried["done_at"]) == (
        True,
        approved_at.isoformat(),
        LATER.isoformat(),
    )


async def test_measures_settled_before_the_last_evaluation_open_the_implementation_evaluation_at_closing() -> None:
    uow = await assigned()
    reply_id = await draft(uow, two_measures())
    await review(uow, reply_id, approve=True)
    for n in (1, 2):
        await settle(uow, f"{reply_id}-m{n}", NOW)
    assert ProposalImplemented.TYPE not in uow.types()  # not 落实 before 办结
    await evaluate(uow, "m-1", "satisfied")
    await evaluate(uow, "m-2", "satisfied")
    assert uow.types()[-3:] == [ProposalClosed.TYPE, ProposalImplemented.TYPE, ImplementationEvaluationOpened.TYPE]
