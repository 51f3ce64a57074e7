"""`proposalflow deadlines recompute` around the 2027 Spring Festival, on SQLite and PostgreSQL.

Five proposals are handled through assignment's and progress's own use cases on the calendar the
`holidays` package gives for 2027 (provisional: no 调休); then 2027 is declared in the policy and the
deadlines recomputed. The expected dates are counted by hand in each test (tests/calendar_fixtures.py
has the declaration and the proposals).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proposalflow.deadlines import recompute
from services.assignment import store as assignment_store
from services.progress import store as progress_store
from shared.db import create_engine
from shared.events import ProposalAssigned, RehandlingStarted, ReplyApproved
from shared.migrate import upgrade_async
from shared.policy import latest_announced_year
from tests.calendar_fixtures import (
    P1,
    P2,
    P3,
    P4,
    P5,
    deadlines_of,
    dongguan,
    handle_year,
    handled_and_published,
    published,
    unsent,
)
from tests.conftest import fresh_postgres_database

NOW = datetime(2027, 2, 4, 1, 0, tzinfo=UTC)


def test_the_installed_calendar_still_lacks_2027() -> None:
    """These tests need 2027 unannounced in the `holidays` package; when a newer package knows it,
    move DECLARED_2027 and the dates here to the next unannounced year."""
    assert latest_announced_year() == 2026


@pytest.fixture(params=["sqlite", "postgres"])
async def engines(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Migrated assignment and progress databases (each service its own)."""
    async with (
        _database(request.param, tmp_path, "assignment") as assignment_url,
        _database(request.param, tmp_path, "progress") as progress_url,
    ):
        await upgrade_async("assignment", assignment_url)
        await upgrade_async("progress", progress_url)
        assignment, progress = create_engine(assignment_url), create_engine(progress_url)
        try:
            yield assignment, progress
        finally:
            await assignment.dispose()
            await progress.dispose()


def _database(kind: str, tmp_path: Any, name: str) -> Any:
    if kind == "postgres":
        return fresh_postgres_database()

    @contextlib.asynccontextmanager
    async def sqlite() -> AsyncIterator[str]:
        yield f"sqlite+aiosqlite:///{tmp_path}/{name}.db"

    return sqlite()


async def test_deadlines_in_2027_are_flagged_provisional_until_the_year_is_declared(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    assignment, progress = engines
    await handle_year(assignment, progress, dongguan(declared=False))
    stored = await deadlines_of(assignment, progress)
    # Before the declaration, on the package's 2027 (春节 off 02-05 and 02-08 to 02-10 only):
    # P1 交办 2026-11-12 + 3 months = 2027-02-12, a Friday the package counts as a working day.
    assert stored[P1]["assignment.reply_due"] == date(2027, 2, 12)
    # P2 交办 Wed 2027-02-03 + 5 working days: 02-04, 02-11, 02-12, 02-15, 02-16.
    assert stored[P2]["assignment.dispute_until"] == date(2027, 2, 16)
    # + 3 months = Mon 2027-05-03, off (劳动节 observed) as is 05-04: Wed 2027-05-05.
    assert stored[P2]["assignment.reply_due"] == date(2027, 5, 5)
    # P3 approved Wed 2027-02-03 + 15 working days: 02-04, 02-11, 02-12, 02-15..19, 02-22..26, 03-01, 03-02.
    assert (stored[P3]["stage"], stored[P3]["progress.evaluation_due"]) == ("answered", date(2027, 3, 2))
    # P4 unsatisfied Tue 2027-01-12 + 1 month = Fri 2027-02-12, a working day on the package's 2027.
    assert (stored[P4]["stage"], stored[P4]["round"], stored[P4]["progress.reply_due"]) == (
        "handling",
        2,
        date(2027, 2, 12),
    )
    assert stored[P5]["stage"] == "closed"

    flags = {
        event.proposal_id: event.provisional_calendar
        for event in await published(assignment, assignment_store.metadata)
        if isinstance(event, ProposalAssigned)
    }
    assert flags == {P1: True, P2: True, P3: True, P4: False, P5: True}
    progress_flags = {
        (event.TYPE, event.proposal_id): event.provisional_calendar
        for event in await published(progress, progress_store.metadata)
        if isinstance(event, ReplyApproved | RehandlingStarted)
    }
    assert progress_flags == {
        (ReplyApproved.TYPE, P3): True,  # 评价期 to 2027-03-02
        (ReplyApproved.TYPE, P4): True,  # approved 2026-12-29, 评价期 into January 2027
        (RehandlingStarted.TYPE, P4): True,
        (ReplyApproved.TYPE, P5): True,
    }


async def test_recompute_after_declaring_2027_moves_the_open_proposals_deadlines_once(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    assignment, progress = engines
    await handled_and_published(assignment, progress)
    before = await deadlines_of(assignment, progress)

    report = await recompute(progress, assignment, dongguan(declared=True), NOW)

    after = await deadlines_of(assignment, progress)
    moved = {(item.service, item.proposal_id, item.deadline, item.previous, item.due) for item in report.moved}
    # Declared: 02-05..02-12 off, Sun 01-31 and Sat 02-20 worked; 05-01..05-05 off.
    assert moved == {
        # 2027-02-12 is now a day off, 02-13 and 02-14 a weekend: Monday 02-15.
        ("assignment", P1, "reply_due", date(2027, 2, 12), date(2027, 2, 15)),
        # From Wed 02-03: 02-04, then 02-15, 02-16, 02-17, 02-18.
        ("assignment", P2, "dispute_until", date(2027, 2, 16), date(2027, 2, 18)),
        # 05-03 to 05-05 off: Thursday 05-06.
        ("assignment", P2, "reply_due", date(2027, 5, 5), date(2027, 5, 6)),
        # From 02-03: 02-04, 02-15..19, Sat 02-20, 02-22..26, 03-01, 03-02, 03-03.
        ("progress", P3, "evaluation_due", date(2027, 3, 2), date(2027, 3, 3)),
        # 2027-01-12 + 1 month = 02-12, now off: Monday 02-15.
        ("progress", P4, "reply_due", date(2027, 2, 12), date(2027, 2, 15)),
    }
    assert not any(item.provisional for item in report.moved)
    assert report.open_proposals == 4
    assert report.lines()[-1] == "5 deadline(s) moved on 4 of 4 open proposal(s); " + (
        "the events go out through each service's outbox relay"
    )
    assert after[P1]["assignment.reply_due"] == date(2027, 2, 15)
    assert (after[P2]["assignment.reply_due"], after[P2]["assignment.dispute_until"]) == (
        date(2027, 5, 6),
        date(2027, 2, 18),
    )
    # 会办意见期限 (1 month) of P1 (2026-12-14) and P2 (Wed 2027-03-03) are working days either way.
    assert after[P2]["assignment.co_opinion_due"] == before[P2]["assignment.co_opinion_due"] == date(2027, 3, 3)
    assert after[P3]["progress.evaluation_due"] == date(2027, 3, 3)
    assert after[P4]["progress.reply_due"] == date(2027, 2, 15)
    # Answered (P3) and closed (P5) proposals keep the reply deadline they were held to.
    for untouched in (P5, P3):
        assert after[untouched]["assignment.reply_due"] == before[untouched]["assignment.reply_due"]
    assert after[P5] == before[P5]

    assert await unsent(assignment, assignment_store.metadata) == [
        ("proposalflow.assignment.deadlines-changed.v1", P1),
        ("proposalflow.assignment.deadlines-changed.v1", P2),
    ]
    assert sorted(await unsent(progress, progress_store.metadata)) == [
        ("proposalflow.handling.deadline-changed.v1", P3),
        ("proposalflow.handling.deadline-changed.v1", P4),
    ]

    again = await recompute(progress, assignment, dongguan(declared=True), NOW)
    assert again.moved == []
    assert again.lines() == ["0 deadline(s) moved on 0 of 4 open proposal(s)"]
    assert await deadlines_of(assignment, progress) == after
    assert len(await unsent(assignment, assignment_store.metadata)) == 2
    assert len(await unsent(progress, progress_store.metadata)) == 2


async def test_a_dry_run_shows_what_would_move_and_changes_nothing(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    assignment, progress = engines
    await handled_and_published(assignment, progress)
    before = await deadlines_of(assignment, progress)

    report = await recompute(progress, assignment, dongguan(declared=True), NOW, dry_run=True)

    assert len(report.moved) == 5
    assert report.lines()[-1] == "5 deadline(s) would move on 4 of 4 open proposal(s)"
    assert await deadlines_of(assignment, progress) == before
    assert await unsent(assignment, assignment_store.metadata) == []
    assert await unsent(progress, progress_store.metadata) == []


def test_the_command_says_what_to_do_when_the_databases_are_not_migrated(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "PROPOSALFLOW_PROGRESS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/progress.db",
        "PROPOSALFLOW_ASSIGNMENT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/assignment.db",
    }
    command = [sys.executable, "-m", "proposalflow.cli", "deadlines", "recompute"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "not migrated" in done.stderr and "proposalflow migrate" in done.stderr
