"""Calendar beyond the official years: a year the State Council has not announced is provisional, a
policy declares a year once it is announced, and what a user sees of both (the flag on events and in
the API, the warning in the log and the metric). Dates counted by hand around the 2027 Spring Festival
(tests/calendar_fixtures.py has the made-up declaration)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from services.assignment.domain import Assignment, AssignmentState, AssignmentStatus, deadlines
from services.assignment.views import assignment_view
from services.progress.app import build
from shared.auth import issue_token
from shared.events import Actor, AssignmentDeadlinesChanged, AssignmentForm, ProposalAssigned, Role
from shared.migrate import upgrade_async
from shared.observability import note_provisional_deadlines
from shared.policy import (
    POLICY_ENV_VAR,
    PolicyError,
    WorkingCalendar,
    deadline_for,
    default_policy,
    latest_announced_year,
    parse_policy,
)
from shared.settings import CommonSettings
from tests.calendar_fixtures import DECLARED_2027, DECLARED_YAML, beijing_10am, dongguan, policy_text
from tests.progress_fixtures import Clock, feed, lifecycle


def test_2027_is_provisional_until_declared_and_2026_is_official() -> None:
    assert latest_announced_year() == 2026, "the holidays package now knows 2027: move these tests a year on"
    package = WorkingCalendar()
    declared = WorkingCalendar(declared_years={2027: DECLARED_2027})
    assert (package.is_official(2026), package.is_official(2027)) == (True, False)
    assert package.provisional_years(date(2026, 11, 12), date(2028, 2, 12)) == (2027, 2028)
    assert declared.provisional_years(date(2026, 11, 12), date(2028, 2, 12)) == (2028,)
    assert not declared.is_provisional(date(2026, 11, 12), date(2027, 2, 15))


def test_a_declared_year_replaces_the_package_table_for_that_year() -> None:
    package = WorkingCalendar()
    declared = WorkingCalendar(declared_years={2027: DECLARED_2027})
    # 春节 2027: the package has 02-05, 02-08..02-10 off; the declaration 02-05..02-12.
    assert [package.is_working_day(date(2027, 2, d)) for d in (10, 11, 12)] == [False, True, True]
    assert [declared.is_working_day(date(2027, 2, d)) for d in (10, 11, 12)] == [False, False, False]
    # 调休上班: Sunday 01-31 and Saturday 02-20 are working days only once declared.
    assert [package.is_working_day(date(2027, 1, 31)), package.is_working_day(date(2027, 2, 20))] == [False, False]
    assert [declared.is_working_day(date(2027, 1, 31)), declared.is_working_day(date(2027, 2, 20))] == [True, True]
    # Other years still come from the package: 2026's 调休 Saturday 02-28 is a working day.
    assert declared.is_working_day(date(2026, 2, 28))
    # The policy's extra days still win over a declaration.
    both = WorkingCalendar(extra_workdays=[date(2027, 2, 12)], declared_years={2027: DECLARED_2027})
    assert both.is_working_day(date(2027, 2, 12))


def test_deadlines_around_the_2027_spring_festival_counted_by_hand() -> None:
    before, after = dongguan(declared=False), dongguan(declared=True)
    wednesday = beijing_10am(date(2027, 2, 3))
    # 5 working days from Wed 02-03: before 02-04, 02-11, 02-12, 02-15, 02-16; after 02-04, 02-15..02-18.
    assert deadline_for(before, "dispute_window", wednesday) == date(2027, 2, 16)
    assert deadline_for(after, "dispute_window", wednesday) == date(2027, 2, 18)
    # 15 working days from 02-03: the declared Saturday 02-20 counts, the declared 02-11/02-12 do not.
    assert deadline_for(before, "evaluation_window", wednesday) == date(2027, 3, 2)
    assert deadline_for(after, "evaluation_window", wednesday) == date(2027, 3, 3)
    # 3 months from 2026-11-12 = Fri 2027-02-12: a working day before, a holiday after (then the weekend).
    november = beijing_10am(date(2026, 11, 12))
    assert deadline_for(before, "reply_deadline", november) == date(2027, 2, 12)
    assert deadline_for(after, "reply_deadline", november) == date(2027, 2, 15)
    # 1 month from Wed 2027-01-27 = Sat 02-27: rolled to Monday 03-01 either way.
    assert deadline_for(after, "rehandling_deadline", beijing_10am(date(2027, 1, 27))) == date(2027, 3, 1)


def test_the_assignment_deadlines_carry_the_provisional_flag() -> None:
    november = beijing_10am(date(2026, 11, 12))
    september = beijing_10am(date(2026, 9, 1))
    before, after = dongguan(declared=False), dongguan(declared=True)
    assert deadlines(november, True, before, WorkingCalendar.from_policy(before)).provisional
    assert not deadlines(november, True, after, WorkingCalendar.from_policy(after)).provisional
    # 交办 2026-09-01: 3 months → 2026-12-01, all in the announced 2026.
    assert not deadlines(september, True, before, WorkingCalendar.from_policy(before)).provisional


def test_the_policy_file_declares_a_year_and_it_loads() -> None:
    policy = parse_policy(policy_text(DECLARED_YAML), "city.yaml")
    declared = policy.calendar.declared_years[2027]
    assert declared.holidays == DECLARED_2027.holidays and declared.workdays == DECLARED_2027.workdays
    assert WorkingCalendar.from_policy(policy).is_official(2027)
    # The packaged policy declares nothing: 2027 stays provisional for Dongguan until the file says so.
    assert default_policy().calendar.declared_years == {}


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (
            "\n  declared_years:\n    2027: {holidays: [2027-02-05], workdays: [2027-02-10]}\n",
            "declared_years[2027].workdays: 2027-02-10 (Wednesday) is a weekday",
        ),
        (
            "\n  declared_years:\n    2027: {holidays: [2026-12-31, 2027-02-05]}\n",
            "declared_years[2027].holidays: 2026-12-31 not in 2027",
        ),
        (
            "\n  declared_years:\n    2027: {holidays: [2027-02-06], workdays: [2027-02-06]}\n",
            "declared_years[2027]: in both holidays and workdays: 2027-02-06",
        ),
        (
            "\n  declared_years:\n    2027: {holidays: [2027-02-05, 2027-02-05]}\n",
            "declared_years[2027].holidays: listed twice: 2027-02-05",
        ),
        (
            "\n  declared_years:\n    2027: {workdays: [2027-02-20]}\n",
            "calendar.declared_years[2027].holidays: Field required",
        ),
        ("\n  declared_years:\n    27: {holidays: [2027-02-05]}\n", "declared_years[27]: 27 is not a year"),
        ("\n  declared_years:\n    2027: {holidays: [2027-02-05], workday: []}\n", "did you mean 'workdays'?"),
    ],
)
def test_a_wrong_declaration_is_refused_with_the_field_and_the_reason(block: str, problem: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(policy_text(block), "city.yaml")
    assert "city.yaml" in str(refused.value)
    assert problem in str(refused.value)


def test_a_provisional_deadline_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    labels = {"service": "assignment", "type": ProposalAssigned.TYPE}
    counted = REGISTRY.get_sample_value("proposalflow_provisional_deadlines_total", labels) or 0.0
    policy = dongguan(declared=False)
    at = beijing_10am(date(2026, 11, 12))
    due = deadlines(at, False, policy, WorkingCalendar.from_policy(policy))
    event = ProposalAssigned(
        proposal_id="p-warn",
        actor=Actor(id="d-1", role=Role.DISPATCHER),
        assignment_id="a-1",
        form="single",
        lead_unit={"id": "dg-zrzyj", "name": "东莞市自然资源局"},
        reply_due=due.reply_due,
        dispute_until=due.dispute_until,
        assigned_at=at,
        provisional_calendar=due.provisional,
    )
    with caplog.at_level(logging.WARNING, logger="proposalflow.calendar"):
        assert note_provisional_deadlines("assignment", event)
        assert not note_provisional_deadlines("assignment", event.model_copy(update={"provisional_calendar": False}))
    [record] = caplog.records
    assert "p-warn" in record.getMessage() and "reply_due 2027-02-12" in record.getMessage()
    assert "calendar.declared_years" in record.getMessage()
    assert REGISTRY.get_sample_value("proposalflow_provisional_deadlines_total", labels) == counted + 1


def test_the_assignment_view_says_whether_a_due_date_may_move() -> None:
    assigned_at = datetime(2026, 11, 12, 2, tzinfo=UTC)
    state = AssignmentState(
        id="a-1",
        proposal_id="p-1",
        status=AssignmentStatus.ASSIGNED,
        form=AssignmentForm.SINGLE,
        lead_unit="dg-zrzyj",
        co_units=(),
        reasons=(),
        suggested_at=assigned_at,
        reply_due=date(2027, 2, 12),
        dispute_until=date(2026, 11, 19),
        assigned_at=assigned_at,
    )
    assert assignment_view(state, calendar=WorkingCalendar())["provisional_calendar"] is True
    declared = WorkingCalendar(declared_years={2027: DECLARED_2027})
    assert assignment_view(state, calendar=declared)["provisional_calendar"] is False
    assert (
        assignment_view(replace(state, reply_due=date(2026, 12, 1)), calendar=WorkingCalendar())["provisional_calendar"]
        is False
    )


@pytest.fixture(params=[False, True], ids=["undeclared", "declared"])
async def progress_api(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, bool]]:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(DECLARED_YAML if request.param else ""), encoding="utf-8")
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    monkeypatch.setenv(POLICY_ENV_VAR, str(policy))
    await upgrade_async("progress", url)
    runtime, app = build(Clock(beijing_10am(date(2026, 12, 4))))
    await feed(
        runtime,
        lifecycle(
            "p-0001",
            submitted=beijing_10am(date(2026, 11, 12)),
            reply_due=date(2027, 2, 12),
            co_opinion_due=date(2026, 12, 14),
        ),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        yield http, request.param
    await runtime.engine.dispose()


async def test_the_progress_api_flags_open_steps_due_in_a_provisional_year(
    progress_api: tuple[httpx.AsyncClient, bool],
) -> None:
    http, declared = progress_api
    headers = {"Authorization": f"Bearer {issue_token(CommonSettings(), subject='c-1', role=Role.COMMITTEE)}"}
    proposal = (await http.get("/proposals/p-0001", headers=headers)).json()
    steps = {step["kind"]: step for step in proposal["open_steps"]}
    assert steps["reply"]["due"] == "2027-02-12"
    assert steps["reply"]["provisional_calendar"] is not declared
    assert steps["co_opinion"]["provisional_calendar"] is False  # 2026-12-14: an announced year
    assert proposal["provisional_calendar"] is not declared
    listed = (await http.get("/proposals", headers=headers)).json()["items"]
    assert [item["provisional_calendar"] for item in listed] == [not declared]


def test_recompute_moves_an_accepted_assignments_reply_deadline_but_not_its_settled_dispute_window() -> None:
    wednesday = beijing_10am(date(2027, 2, 3))
    before, after = dongguan(declared=False), dongguan(declared=True)
    due = deadlines(wednesday, False, before, WorkingCalendar.from_policy(before))
    state = AssignmentState(
        id="a-1",
        proposal_id="p-1",
        status=AssignmentStatus.ACCEPTED,
        form=AssignmentForm.SINGLE,
        lead_unit="dg-zrzyj",
        co_units=(),
        reasons=(),
        suggested_at=wednesday,
        reply_due=due.reply_due,
        dispute_until=due.dispute_until,
        assigned_at=wednesday,
    )
    accepted = Assignment(state)
    system = Actor(id="deadlines-recompute", role=Role.SYSTEM)
    changes = accepted.recompute_deadlines(after, WorkingCalendar.from_policy(after), system, "2027 declared")
    # 3 months from 02-03 = Mon 05-03; declared 05-03..05-05 off: Thu 05-06 (it was Wed 05-05).
    assert [(c.deadline, c.previous, c.due) for c in changes] == [("reply_due", date(2027, 5, 5), date(2027, 5, 6))]
    assert accepted.state.dispute_until == date(2027, 2, 16)
    [(event, _)] = accepted.events
    assert isinstance(event, AssignmentDeadlinesChanged)
    assert (event.dispute_until, event.previous_dispute_until, event.provisional_calendar) == (
        date(2027, 2, 16),
        date(2027, 2, 16),
        False,
    )
    # Still waiting for the units' answers, the window moves with the calendar: 02-16 → 02-18.
    waiting = Assignment(replace(state, status=AssignmentStatus.ASSIGNED))
    waiting.recompute_deadlines(after, WorkingCalendar.from_policy(after), system, "2027 declared")
    assert waiting.state.dispute_until == date(2027, 2, 18)
    # Nothing left to move: a second pass records nothing.
    assert waiting.recompute_deadlines(after, WorkingCalendar.from_policy(after), system, "again") == []
    assert len(waiting.events) == 1
