"""Around the 2027 Spring Festival: a declared 2027 calendar and five proposals handled across it.

The installed `holidays` package knows the State Council's announcements up to 2026; for 2027 it has
only the statutory days (春节 2027-02-05 除夕 to 02-08, two of them on a weekend, so 02-09 and 02-10 off
as well), without 调休. `DECLARED_2027` is a declaration shaped like the real ones (the real 2027 notice
is not out): 春节 02-05 to 02-12 off with Sunday 01-31 and Saturday 02-20 worked, 劳动节 05-01 to 05-05
with Saturday 05-08 worked, 国庆 10-01 to 10-07 with Sunday 09-26 and Saturday 10-09 worked.

`handle_year` takes five proposals through assignment's and progress's own use cases on their own
databases, at fixed moments (10:00 in Beijing), on the calendar without the declaration:

- P1 (`p-cal-handling`): assigned 2026-11-12 (主办+会办), handled: 办复期限 3 months → 2027-02-12.
- P2 (`p-cal-assigned`): assigned 2027-02-03 (Wednesday before 春节), dispute window still open.
- P3 (`p-cal-answered`): assigned 2026-11-12, reply approved 2027-02-03: 评价期 15 working days.
- P4 (`p-cal-rehandling`): reply approved 2026-12-29, the first proposer unsatisfied on 2027-01-12:
  重新办理 within 1 month → 2027-02-12.
- P5 (`p-cal-closed`): assigned 2026-11-12, answered and evaluated satisfied: 办结.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import MetaData, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.assignment import service as assignment_service
from services.assignment import store as assignment_store
from services.assignment.catalogs import load_routing
from services.assignment.domain import Route
from services.assignment.service import Context, Router
from services.assignment.unit_of_work import SqlUnitOfWork as AssignmentUnitOfWork
from services.progress import service as progress_service
from services.progress import store as progress_store
from services.progress.domain import DraftReply, Evaluate, HandlingStep, Occasion, ReportProgress, ReviewReply
from services.progress.unit_of_work import SqlUnitOfWork as ProgressUnitOfWork
from shared.envelope import from_kafka
from shared.events import (
    Actor,
    Event,
    ProgressContent,
    ProgressKind,
    ProposalFiled,
    ProposalSubmitted,
    ReplyContent,
    Role,
    SuggestionAdoption,
    parse_message,
)
from shared.policy import DeclaredYear, Policy, WorkingCalendar, default_policy
from tests.progress_fixtures import COMMITTEE, DISPATCHER, lifecycle

DECLARED_2027 = DeclaredYear(
    holidays=[
        date(2027, 1, 1),
        *(date(2027, 2, day) for day in range(5, 13)),
        *(date(2027, 4, day) for day in (3, 4, 5)),
        *(date(2027, 5, day) for day in range(1, 6)),
        date(2027, 6, 9),
        date(2027, 9, 15),
        *(date(2027, 10, day) for day in range(1, 8)),
    ],
    workdays=[date(2027, 1, 31), date(2027, 2, 20), date(2027, 5, 8), date(2027, 9, 26), date(2027, 10, 9)],
    announcement="a made-up 2027 notice for the tests",
)

PACKAGED = Path(__file__).resolve().parents[1] / "shared" / "policies" / "dongguan.yaml"

DECLARED_YAML = """
  declared_years:
    2027:
      announcement: 国务院办公厅关于2027年部分节假日安排的通知 (made up for the tests)
      holidays: [2027-01-01, 2027-02-05, 2027-02-06, 2027-02-07, 2027-02-08, 2027-02-09, 2027-02-10,
                 2027-02-11, 2027-02-12, 2027-04-03, 2027-04-04, 2027-04-05, 2027-05-01, 2027-05-02,
                 2027-05-03, 2027-05-04, 2027-05-05, 2027-06-09, 2027-09-15, 2027-10-01, 2027-10-02,
                 2027-10-03, 2027-10-04, 2027-10-05, 2027-10-06, 2027-10-07]
      workdays: [2027-01-31, 2027-02-20, 2027-05-08, 2027-09-26, 2027-10-09]
"""


def policy_text(calendar_block: str) -> str:
    """The packaged Dongguan policy with ``calendar_block`` in place of its empty `declared_years`."""
    text = PACKAGED.read_text(encoding="utf-8")
    empty = "\n  declared_years: {}\n"
    assert text.endswith(empty), "the packaged policy should end with its empty calendar.declared_years"
    return text.removesuffix(empty) + calendar_block


P1, P2, P3, P4, P5 = "p-cal-handling", "p-cal-assigned", "p-cal-answered", "p-cal-rehandling", "p-cal-closed"
LEAD, CO = "dg-zrzyj", "dg-czj"
LEAD_ACTOR = Actor(id="u-zrzyj", role=Role.UNIT, unit=LEAD)


def beijing_10am(day: date) -> datetime:
    """10:00 in Beijing on ``day``."""
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)


def dongguan(*, declared: bool) -> Policy:
    """The Dongguan policy, with or without the 2027 declaration."""
    policy = default_policy()
    if not declared:
        return policy
    calendar = policy.calendar.model_copy(update={"declared_years": {2027: DECLARED_2027}})
    return policy.model_copy(update={"calendar": calendar})


def context(policy: Policy) -> Context:
    return Context(policy, WorkingCalendar.from_policy(policy), Router())


REPLY = ReplyContent(
    text="答复全文, 已采纳全部建议。",
    classification="A",
    adoptions=[SuggestionAdoption(number=1, adopted=True), SuggestionAdoption(number=2, adopted=True)],
)


async def published(engine: AsyncEngine, metadata: MetaData, proposal_id: str | None = None) -> list[Event]:
    """What a service staged in its outbox (for ``proposal_id``, or all), as its relay publishes it."""
    outbox = metadata.tables["outbox"]
    query = select(outbox).order_by(outbox.c.id)
    if proposal_id is not None:
        query = query.where(outbox.c.key == proposal_id)
    found = []
    async with engine.connect() as conn:
        for row in (await conn.execute(query)).mappings():
            headers = [(name, value.encode()) for name, value in json.loads(row["headers"])]
            envelope = from_kafka(row["payload"], headers)
            event = parse_message(envelope.type, envelope.data)
            assert isinstance(event, Event)
            found.append(event)
    return found


async def _assign(assignment: AsyncEngine, proposal_id: str, at: datetime, policy: Policy) -> list[Event]:
    """Intake's events to assignment, then 交办 (主办 + 会办) at ``at``; returns what intake and
    assignment published, for progress to fold."""
    intake_events = lifecycle(proposal_id, submitted=at, assigned=False)
    submitted, filed = intake_events
    assert isinstance(submitted, ProposalSubmitted) and isinstance(filed, ProposalFiled)
    ctx = context(policy)
    async with assignment.begin() as conn:
        await assignment_service.on_submitted(AssignmentUnitOfWork(conn), submitted)
    async with assignment.begin() as conn:
        await assignment_service.on_filed(AssignmentUnitOfWork(conn), filed, ctx, at)
    async with assignment.begin() as conn:
        await assignment_service.assign(
            AssignmentUnitOfWork(conn), proposal_id, Route(LEAD, (CO,)), DISPATCHER, None, ctx, at
        )
    return [*intake_events, *await published(assignment, assignment_store.metadata, proposal_id)]


async def _fold(progress: AsyncEngine, events: list[Event]) -> None:
    from shared.outbox import envelope_for

    async with progress.begin() as conn:
        for event in events:
            source = "assignment" if event.TOPIC.endswith("assignments") else "intake"
            await progress_service.record(ProgressUnitOfWork(conn), envelope_for(event, source), event)


async def _step(progress: AsyncEngine, action: str, proposal_id: str, at: datetime, policy: Policy, **kw: str) -> str:
    step: HandlingStep
    if action == "progress":
        content = ProgressContent(kind=ProgressKind.PHONE, on=at.date(), text="与提案者电话沟通")
        step, actor = ReportProgress(proposal_id, LEAD, content), LEAD_ACTOR
    elif action == "reply":
        step, actor = DraftReply(proposal_id, LEAD, REPLY), LEAD_ACTOR
    elif action == "approve":
        step, actor = ReviewReply(proposal_id, kw["reply_id"], approve=True), COMMITTEE
    else:
        comment = "措施不具体" if kw["grade"] == "unsatisfied" else ""
        step = Evaluate(proposal_id, handling_grade="satisfied", result_grade=kw["grade"], comment=comment)
        actor = Actor(id=kw["signer"], role=Role.MEMBER)
    occasion = Occasion(actor, None, at, policy, WorkingCalendar.from_policy(policy))
    async with progress.begin() as conn:
        await progress_service.carry_out(ProgressUnitOfWork(conn), step, occasion)
    return step.reply_id if isinstance(step, DraftReply) else ""


async def _answer(progress: AsyncEngine, proposal_id: str, at: datetime, policy: Policy) -> None:
    reply_id = await _step(progress, "reply", proposal_id, at, policy)
    await _step(progress, "approve", proposal_id, at, policy, reply_id=reply_id)


async def handle_year(assignment: AsyncEngine, progress: AsyncEngine, policy: Policy) -> None:
    """P1 to P5 (module docstring) on ``policy``, through both services' use cases."""
    async with assignment.begin() as conn:
        await assignment_service.seed(AssignmentUnitOfWork(conn), load_routing())
    november = beijing_10am(date(2026, 11, 12))
    for proposal_id, at in ((P1, november), (P2, beijing_10am(date(2027, 2, 3))), (P3, november), (P5, november)):
        await _fold(progress, await _assign(assignment, proposal_id, at, policy))
    await _fold(progress, await _assign(assignment, P4, beijing_10am(date(2026, 9, 1)), policy))

    await _step(progress, "progress", P1, beijing_10am(date(2026, 11, 20)), policy)
    await _answer(progress, P3, beijing_10am(date(2027, 2, 3)), policy)
    await _answer(progress, P4, beijing_10am(date(2026, 12, 29)), policy)
    await _step(progress, "evaluate", P4, beijing_10am(date(2027, 1, 12)), policy, signer="m-1", grade="unsatisfied")
    await _answer(progress, P5, beijing_10am(date(2027, 1, 5)), policy)
    for signer in ("m-1", "m-2"):
        await _step(progress, "evaluate", P5, beijing_10am(date(2027, 1, 6)), policy, signer=signer, grade="satisfied")


async def handled_and_published(assignment: AsyncEngine, progress: AsyncEngine) -> None:
    """P1 to P5 handled before 2027 was declared, everything they caused long published."""
    await handle_year(assignment, progress, dongguan(declared=False))
    await mark_outbox_sent(assignment, assignment_store.metadata)
    await mark_outbox_sent(progress, progress_store.metadata)


async def deadlines_of(assignment: AsyncEngine, progress: AsyncEngine) -> dict[str, dict[str, object]]:
    """Every proposal's stored deadlines, in both services, plus progress's stage and round."""
    found: dict[str, dict[str, object]] = {}
    async with assignment.connect() as conn:
        for row in (await conn.execute(select(assignment_store.assignments))).mappings():
            if row["status"] != "superseded":
                found.setdefault(row["proposal_id"], {}).update(
                    {f"assignment.{name}": row[name] for name in ("reply_due", "co_opinion_due", "dispute_until")}
                )
    async with progress.connect() as conn:
        for row in (await conn.execute(select(progress_store.proposals))).mappings():
            found.setdefault(row["id"], {}).update(
                {
                    "stage": row["stage"],
                    "round": row["round"],
                    **{f"progress.{name}": row[name] for name in ("reply_due", "co_opinion_due", "evaluation_due")},
                }
            )
    return found


async def mark_outbox_sent(engine: AsyncEngine, metadata: MetaData) -> None:
    """Mark every staged row published (what happened long before the calendar changed)."""
    outbox = metadata.tables["outbox"]
    async with engine.begin() as conn:
        await conn.execute(update(outbox).values(sent_at=datetime.now(UTC)))


async def unsent(engine: AsyncEngine, metadata: MetaData) -> list[tuple[str, str]]:
    """(type, proposal) of every outbox row not yet published, in order."""
    outbox = metadata.tables["outbox"]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.type, outbox.c.key).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id)
        )
        return [(row.type, row.key) for row in rows]
