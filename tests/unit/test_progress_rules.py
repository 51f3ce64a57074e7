"""Progress's rules, scheduler and statistics: pure functions, plus a year of days through the
scheduler on SQLite with an injected clock."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from services.progress import domain, service, store
from services.progress.app import build
from services.progress.domain import (
    Dossier,
    DraftReply,
    MeasureStatus,
    Occasion,
    ReplyStatus,
    ReportProgress,
    ReviewReply,
    Stage,
)
from services.progress.stats import statistics
from services.progress.unit_of_work import SqlUnitOfWork
from shared.errors import RuleViolation, StateConflict
from shared.events import Actor, MeasurePlan, ProgressContent, ProgressKind, ReplyContent, Role, SuggestionAdoption
from shared.migrate import upgrade_async
from shared.policy import WorkingCalendar, default_policy
from tests.progress_fixtures import feed, lifecycle
from tests.progress_records import co_opinion, evaluation, measure, proposal, reply

POLICY = default_policy()
CALENDAR = WorkingCalendar.from_policy(POLICY)
LEAD = Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj")
COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)


def test_split_proposals_are_answered_once_every_unit_reply_is_approved() -> None:
    split = proposal(form="split")
    assert domain.reply_units(split) == ["u1", "u2"]
    assert domain.reply_units(proposal()) == ["u1"]
    units = domain.reply_units(split)
    assert domain.round_stage(units, [reply("u1")]) == Stage.HANDLING
    assert domain.round_stage(units, [reply("u1"), reply("u2", "drafted")]) == Stage.REPLY_REVIEW
    assert domain.round_stage(units, [reply("u1"), reply("u2")]) == Stage.ANSWERED


def test_only_the_lead_unit_replies_and_only_once_per_round() -> None:
    dossier = Dossier(proposal())
    with pytest.raises(RuleViolation) as refused:
        domain.reply_allowed(dossier, "u2")
    assert refused.value.rule == "reply_by_lead_unit"
    dossier.replies.append(reply("u1", "drafted"))
    with pytest.raises(StateConflict):
        domain.reply_allowed(dossier, "u1")
    dossier.replies[0] = replace(dossier.replies[0], status=ReplyStatus.RETURNED)
    domain.reply_allowed(dossier, "u1")


def test_co_opinions_come_from_co_units_of_a_lead_co_proposal_once() -> None:
    dossier = Dossier(proposal())
    with pytest.raises(RuleViolation):
        domain.co_opinion_allowed(dossier, "u1")
    domain.co_opinion_allowed(dossier, "u2")
    dossier.co_opinions.append(co_opinion("u2"))
    with pytest.raises(StateConflict):
        domain.co_opinion_allowed(dossier, "u2")


def test_evaluation_window_signers_and_rehandling_by_the_first_proposer_only_once() -> None:
    answered = Dossier(proposal(stage="answered", evaluation_due=date(2026, 6, 20)))
    domain.evaluation_allowed(answered, "m-2", date(2026, 6, 20), ["satisfied", "satisfied"], POLICY)
    with pytest.raises(StateConflict) as closed:
        domain.evaluation_allowed(answered, "m-2", date(2026, 6, 21), ["satisfied", "satisfied"], POLICY)
    assert closed.value.rule == "evaluation_window_open"
    with pytest.raises(RuleViolation):
        domain.evaluation_allowed(answered, "m-9", date(2026, 6, 1), ["satisfied", "satisfied"], POLICY)
    with pytest.raises(RuleViolation) as grade:
        domain.evaluation_allowed(answered, "m-1", date(2026, 6, 1), ["great", "satisfied"], POLICY)
    assert "basically_satisfied" in grade.value.message
    assert domain.rehandling_triggered(answered, "m-1", ["satisfied", "unsatisfied"], POLICY)
    assert not domain.rehandling_triggered(answered, "m-2", ["unsatisfied", "unsatisfied"], POLICY)
    second_round = Dossier(proposal(stage="answered", round=2))
    assert not domain.rehandling_triggered(second_round, "m-1", ["unsatisfied", "unsatisfied"], POLICY)


def test_measures_move_forward_and_a_proposal_is_implemented_when_all_are_settled() -> None:
    domain.measure_transition(MeasureStatus.PLANNED, MeasureStatus.IN_PROGRESS, "")
    with pytest.raises(StateConflict):
        domain.measure_transition(MeasureStatus.DONE, MeasureStatus.IN_PROGRESS, "")
    with pytest.raises(RuleViolation):
        domain.measure_transition(MeasureStatus.PLANNED, MeasureStatus.DROPPED, " ")
    closed = Dossier(proposal(stage="closed"), measures=[measure("done"), measure("dropped", id="m-2")])
    assert domain.implemented(closed)
    assert not domain.implemented(Dossier(proposal(stage="closed"), measures=[measure("dropped")]))
    assert not domain.implemented(Dossier(proposal(stage="answered"), measures=[measure("done")]))
    assert not domain.implemented(Dossier(proposal(stage="closed")))


def test_supervision_is_for_the_leaders_of_key_proposals() -> None:
    domain.supervisor_must_lead(proposal(is_key=True, leaders=["l-1"]), "l-1")
    with pytest.raises(RuleViolation):
        domain.supervisor_must_lead(proposal(is_key=True, leaders=["l-1"]), "l-2")
    with pytest.raises(RuleViolation):
        domain.supervisor_must_lead(proposal(leaders=["l-1"]), "l-1")


def test_due_notices_warn_then_mark_overdue_with_deterministic_ids() -> None:
    dossier = Dossier(proposal(co_opinion_due=None))
    # 到期预警: 10 working days before Monday 2026-06-01 is Monday 2026-05-18 (no holiday in between).
    assert domain.due_notices([dossier], date(2026, 5, 15), POLICY, CALENDAR) == []
    [(warning, warning_id)] = domain.due_notices([dossier], date(2026, 5, 18), POLICY, CALENDAR)
    assert (warning.TYPE, warning.kind, warning.unit) == ("proposalflow.deadline.approaching.v1", "reply", "u1")
    assert domain.due_notices([dossier], date(2026, 5, 29), POLICY, CALENDAR)[0][1] == warning_id
    [(overdue, overdue_id)] = domain.due_notices([dossier], date(2026, 6, 2), POLICY, CALENDAR)
    assert overdue.TYPE == "proposalflow.deadline.overdue.v1"
    assert overdue_id != warning_id
    dossier.replies.append(reply("u1", "drafted"))
    assert domain.due_notices([dossier], date(2026, 6, 2), POLICY, CALENDAR) == []


def test_deadline_notices_of_a_key_proposal_name_its_supervising_leader() -> None:
    overdue_day = date(2026, 6, 2)
    [(plain, _)] = domain.due_notices([Dossier(proposal(co_opinion_due=None))], overdue_day, POLICY, CALENDAR)
    assert plain.supervising_leader is None
    key = Dossier(proposal(co_opinion_due=None, is_key=True, leaders=["l-1", "l-2"]))
    [(overdue, _)] = domain.due_notices([key], overdue_day, POLICY, CALENDAR)
    assert overdue.supervising_leader == "l-1"


def test_personal_data_is_masked_in_published_replies() -> None:
    masked = domain.redact_personal_data("请联系 0769-22223333 或 13912345678, 邮箱 a.b@dg.gov.cn")
    assert "22223333" not in masked and "13912345678" not in masked and "@" not in masked


async def test_a_year_of_days_through_the_scheduler_twice_a_day_makes_each_notice_once(tmp_path, monkeypatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    await upgrade_async("progress", url)
    runtime, _app = build()
    await feed(runtime, lifecycle("p-0001"))  # never replied: reply and co-opinion deadlines pass
    await feed(runtime, lifecycle("p-0002", co=()))
    start = datetime(2026, 3, 2, 2, tzinfo=UTC)
    async with runtime.transaction() as conn:
        phoned = ProgressContent(kind=ProgressKind.PHONE, on=date(2026, 3, 2), text="电话")
        await service.carry_out(
            SqlUnitOfWork(conn),
            ReportProgress("p-0002", "dg-zrzyj", phoned),
            Occasion(LEAD, None, start, POLICY, CALENDAR),
        )
        content = ReplyContent(
            text="答复全文, 已采纳全部建议。",
            classification="A",
            adoptions=[SuggestionAdoption(number=1, adopted=True), SuggestionAdoption(number=2, adopted=True)],
            measures=[MeasurePlan(text="建设平台", owner_unit="dg-zrzyj", due=date(2026, 9, 30))],
        )
        drafted = DraftReply("p-0002", "dg-zrzyj", content)
        await service.carry_out(SqlUnitOfWork(conn), drafted, Occasion(LEAD, None, start, POLICY, CALENDAR))
        approved = ReviewReply("p-0002", drafted.reply_id, approve=True)
        await service.carry_out(SqlUnitOfWork(conn), approved, Occasion(COMMITTEE, None, start, POLICY, CALENDAR))
    for day in range(366):
        for _replica in range(2):
            async with runtime.transaction() as conn:
                await service.tick(SqlUnitOfWork(conn), start + timedelta(days=day), POLICY, CALENDAR)
    outbox = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.type, outbox.c.key, outbox.c.payload))).all()
        closed = await store.get_proposal(conn, "p-0002")
    notices = Counter(
        (row.key, row.type.split(".")[2], json.loads(row.payload).get("kind"))
        for row in rows
        if ".deadline." in row.type
    )
    assert notices == {
        ("p-0001", "approaching", "reply"): 1,
        ("p-0001", "overdue", "reply"): 1,
        ("p-0001", "approaching", "co_opinion"): 1,
        ("p-0001", "overdue", "co_opinion"): 1,
        ("p-0002", "approaching", "evaluation"): 2,  # one per signer
        ("p-0002", "overdue", "evaluation"): 2,
        ("p-0002", "approaching", "measure"): 1,
        ("p-0002", "overdue", "measure"): 1,
    }
    assert [row.type for row in rows].count("proposalflow.proposal.closed.v1") == 1
    assert closed is not None and closed["stage"] == "closed"
    await runtime.engine.dispose()


def test_statistics_of_a_small_year_match_the_hand_computed_figures() -> None:
    at = datetime(2026, 5, 1, 2, tzinfo=UTC)
    a = Dossier(
        proposal(id="A", stage="closed", closed_at=at, lead_unit="u1", co_units=[]),
        replies=[reply("u1", adoptions=[{"number": 1, "adopted": True}, {"number": 2, "adopted": True}])],
        evaluations=[evaluation("satisfied"), evaluation("basically_satisfied", signer_id="m-2")],
    )
    b = Dossier(
        proposal(
            id="B", stage="closed", closed_at=at, lead_unit="u1", co_units=[], category="社会建设", suggestion_count=3
        ),
        replies=[
            reply(
                "u1",
                classification="C",
                drafted_at=datetime(2026, 6, 10, 2, tzinfo=UTC),
                adoptions=[
                    {"number": 1, "adopted": True},
                    {"number": 2, "adopted": False},
                    {"number": 3, "adopted": False},
                ],
            )
        ],
        evaluations=[evaluation("unsatisfied")],
    )
    c = Dossier(proposal(id="C", lead_unit="u2", co_units=[], co_opinion_due=None, is_key=True, leaders=["l-1"]))
    d = Dossier(proposal(id="D", stage="not_filed", filing_number=None, lead_unit=None, co_units=[]))
    e = Dossier(proposal(id="E", stage="withdrawn", filing_number=None, lead_unit=None, co_units=[]))
    figures = statistics([a, b, c, d, e], date(2026, 7, 1), POLICY)
    overall = figures["overall"]
    assert overall["filing_rate"] == 0.75  # 立案率: A, B, C filed of A, B, C, D (E withdrawn) = 3/4
    # A drafted 05-01 ≤ 06-01; B drafted 06-10 > 06-01; C never answered, due 06-01 (today 07-01): 1/3
    assert overall["on_time_reply_rate"] == 0.3333
    assert overall["closing_rate"] == 0.6667  # 办结率: A, B closed of 3 filed = 2/3
    assert overall["evaluation_satisfaction_rate"] == 0.6667  # 满意 + 基本满意 (A's two) of 3 evaluations = 2/3
    assert overall["satisfaction_rate"] == 0.5  # per proposal: A satisfied, B not = 1/2
    assert overall["suggestion_adoption_rate"] == 0.6  # (2 + 1) adopted of (2 + 3) answered = 3/5
    assert overall["first_class_rate"] == 0.5  # A-class: A's reply of 2 approved replies = 1/2
    assert overall["overdue"] == {"reply": 1}  # C has no reply, due 06-01, today 07-01
    assert figures["overdue_by_unit"] == {"u2": 1}
    assert figures["per_unit"]["u1"]["closing_rate"] == 1.0  # 2/2
    assert figures["per_category"]["社会建设"]["satisfaction_rate"] == 0.0  # 0/1
    assert figures["per_year"]["2026"]["submitted"] == 4
    assert [(row["id"], row["overdue"]) for row in figures["key_proposals"]] == [("C", True)]
