"""The skeleton's domain rules, service by service: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.assignment.catalogs import load_routing
from services.assignment.domain import RoutingTable, deadlines, suggest_route
from services.intake import domain as intake
from services.progress.domain import Stage, next_stage
from shared.events import (
    Actor,
    AssignmentAccepted,
    AssignmentForm,
    ProposalAssigned,
    ProposalFiled,
    Proposer,
    ReplyReturned,
    Role,
    Suggestion,
    UnitRef,
)
from shared.policy import WorkingCalendar, default_policy

MEMBER = Actor(id="m-1", role=Role.MEMBER)
COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)


# intake ------------------------------------------------------------------------------------------


def test_suggestions_are_numbered_in_order_and_empty_ones_named() -> None:
    assert intake.number_suggestions(["甲", " 乙 "]) == [
        Suggestion(number=1, text="甲"),
        Suggestion(number=2, text="乙"),
    ]
    with pytest.raises(intake.RuleViolation, match=r"\[2\]"):
        intake.number_suggestions(["甲", "  "])


def test_a_member_submits_only_as_first_proposer_and_each_signer_signs_once() -> None:
    me = Proposer(id="m-1", name="张三")
    intake.submitter_must_sign(MEMBER, me, [Proposer(id="m-2", name="李四")])
    intake.submitter_must_sign(COMMITTEE, Proposer(id="m-9", name="王五"), [])
    with pytest.raises(intake.RuleViolation) as refused:
        intake.submitter_must_sign(MEMBER, Proposer(id="m-9", name="王五"), [])
    assert refused.value.rule == "submitter_is_first_proposer"
    with pytest.raises(intake.RuleViolation, match="m-2"):
        intake.submitter_must_sign(MEMBER, me, [Proposer(id="m-2", name="李四"), Proposer(id="m-2", name="李四")])


def test_unknown_category_lists_the_known_ones() -> None:
    with pytest.raises(intake.RuleViolation, match="经济建设"):
        intake.category_must_be_known("体育", default_policy().categories)


def test_only_a_submitted_proposal_is_reviewed() -> None:
    intake.review_may_decide(intake.ProposalStatus.SUBMITTED)
    for status in (intake.ProposalStatus.FILED, intake.ProposalStatus.NOT_FILED, intake.ProposalStatus.WITHDRAWN):
        with pytest.raises(intake.StateConflict):
            intake.review_may_decide(status)


def test_filing_numbers_are_per_year_and_zero_padded() -> None:
    assert intake.filing_number(2026, 7) == "2026-0007"


# assignment --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routing() -> RoutingTable:
    return load_routing()


def test_keywords_route_land_consolidation_to_natural_resources_with_co_units(routing: RoutingTable) -> None:
    route = suggest_route("关于推进全域土地综合整治的建议", "", "经济建设", routing)
    assert route.lead == "dg-zrzyj"
    assert route.co == ("dg-nyj", "dg-fgj")
    assert route.form == AssignmentForm.LEAD_CO
    assert "土地" in route.reasons[0]


def test_without_a_keyword_the_category_default_handles_it(routing: RoutingTable) -> None:
    route = suggest_route("关于完善基层协商的建议", "加强协商民主", "政治建设", routing)
    assert (route.lead, route.co, route.form) == ("dg-sfj", (), AssignmentForm.SINGLE)


def test_every_routed_unit_is_in_the_catalog(routing: RoutingTable) -> None:
    ids = {unit.id for unit in routing.units}
    for rule in routing.rules:
        assert {rule.lead, *rule.co} <= ids
    assert set(routing.category_defaults.values()) <= ids
    assert set(routing.category_defaults) == set(default_policy().categories)


def test_assignment_deadlines_follow_the_policy_across_national_day() -> None:
    policy = default_policy()
    # Assigned on Friday 2025-09-26 (Beijing time): 5 working days, with Sun 9-28 a shifted workday
    # and Oct 1-8 off, ends on Thu 10-10; 3 months lands on Fri 12-26; 1 month on Oct 26 (a Sunday) → Mon 10-27.
    due = deadlines(datetime(2025, 9, 26, 2, 0, tzinfo=UTC), True, policy, WorkingCalendar.from_policy(policy))
    assert due.dispute_until == date(2025, 10, 10)
    assert due.reply_due == date(2025, 12, 26)
    assert due.co_opinion_due == date(2025, 10, 27)


# progress ----------------------------------------------------------------------------------------


def _assigned() -> ProposalAssigned:
    return ProposalAssigned(
        proposal_id="p",
        actor=COMMITTEE,
        assignment_id="a",
        form=AssignmentForm.SINGLE,
        lead_unit=UnitRef(id="u", name="单位"),
        reply_due=date(2026, 6, 1),
        dispute_until=date(2026, 3, 10),
        assigned_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def _filed() -> ProposalFiled:
    return ProposalFiled(
        proposal_id="p",
        actor=COMMITTEE,
        filing_number="2026-0001",
        title="t",
        category="经济建设",
        first_proposer=Proposer(id="m-1", name="张三"),
        suggestion_count=1,
        filed_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_the_lifecycle_moves_forward_and_a_late_event_does_not_move_it_back() -> None:
    assert next_stage(Stage.SUBMITTED, _filed()) == Stage.FILED
    assert next_stage(Stage.FILED, _assigned()) == Stage.ASSIGNED
    assert next_stage(Stage.ASSIGNED, _filed()) == Stage.ASSIGNED
    assert (
        next_stage(Stage.REPLY_REVIEW, ReplyReturned(proposal_id="p", actor=COMMITTEE, reply_id="r", reason="补充"))
        == Stage.HANDLING
    )


def test_a_co_units_late_acceptance_does_not_reopen_an_answered_proposal() -> None:
    """签收 by a co-handling unit can reach progress after the lead's reply was approved (the demo's year
    hit it: the proposer could not evaluate, "the proposal is handling"). The proposal stays answered."""
    accepted = AssignmentAccepted(
        proposal_id="p", actor=COMMITTEE, assignment_id="a", unit=UnitRef(id="dg-jtj", name="市交通局")
    )
    assert next_stage(Stage.ANSWERED, accepted) == Stage.ANSWERED
    assert next_stage(Stage.REPLY_REVIEW, accepted) == Stage.REPLY_REVIEW
    assert next_stage(Stage.ASSIGNED, accepted) == Stage.HANDLING
