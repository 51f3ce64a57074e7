"""The shared command path (shared/commands.py): one problem mapping for every service's refusals, and
the checks of an inbound command in the order a sender reads their reasons."""

from __future__ import annotations

from typing import Any

import pytest

from shared.commands import InboundDoor, NotYours, Refusal, RuleViolation, StateConflict, problem_for, rejection
from shared.envelope import Envelope
from shared.events import (
    SUBMISSIONS,
    UNIT_REPORTS,
    AcceptAssignment,
    Actor,
    CosignProposal,
    EvaluateReply,
    ReportProgress,
    ResubmitProposal,
    Role,
    SubmitCoOpinion,
    SubmitProposal,
    UnitReportRejected,
    WithdrawProposal,
)
from shared.settings import parse_source_grants, parse_source_systems
from shared.topics import outside_system_topic

OA = "/oa/dg-zrzyj"
PORTAL = "/portal/members"
REPORT = {"proposal_id": "p-1", "unit": "dg-zrzyj", "kind": "phone", "on": "2026-04-01", "text": "电话沟通"}


def test_each_kind_of_refusal_has_its_status_and_names_its_rule() -> None:
    for exc, status, title in [
        (RuleViolation("reply_class_known", "unknown class"), 422, "Request refused"),
        (StateConflict("evaluate_once", "already evaluated"), 409, "Conflict"),
        (NotYours("unit_answers_own", "another unit's assignment"), 403, "Forbidden"),
    ]:
        problem = problem_for(exc)
        assert (problem.status, problem.title, problem.detail) == (status, title, exc.message)
        assert problem.errors == [{"rule": exc.rule, "message": exc.message}]


def _door() -> InboundDoor:
    return InboundDoor(
        UNIT_REPORTS,
        [ReportProgress, SubmitCoOpinion],
        [f"{OA}=unit:dg-zrzyj"],
        sends="send unit reports",
        noun="unit report",
    )


def _refusal(envelope: Envelope, authorise: Any = lambda command: None) -> Refusal:
    with pytest.raises(Refusal) as refused:
        _door().admit(envelope, authorise, topic=None)
    return refused.value


def test_an_inbound_command_is_refused_with_the_first_reason_that_applies() -> None:
    unit_actor = {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}
    unknown = _refusal(Envelope(type="proposalflow.unit-report.other.v1", source=OA, data={}))
    assert unknown.reason.startswith("unknown command type 'proposalflow.unit-report.other.v1' on " + UNIT_REPORTS)
    assert f"send one of {ReportProgress.TYPE}, {SubmitCoOpinion.TYPE}" in unknown.reason
    stranger = _refusal(Envelope(type=ReportProgress.TYPE, source="/oa/else", data={**REPORT, "actor": unit_actor}))
    assert "'/oa/else' is not allowed to send unit reports" in stranger.reason
    invalid = _refusal(Envelope(type=ReportProgress.TYPE, source=OA, data={**REPORT, "text": ""}))
    assert invalid.reason.startswith("invalid unit report: ") and invalid.errors[0]["field"] == "actor"
    member = {"id": "m-1", "role": "member"}
    refused = _refusal(
        Envelope(type=ReportProgress.TYPE, source=OA, data={**REPORT, "actor": member}),
        lambda command: f"{command.actor.role.value} may not report",
    )
    assert (refused.reason, refused.actor) == ("member may not report", Actor(id="m-1", role=Role.MEMBER))
    forged = _refusal(Envelope(type=ReportProgress.TYPE, source=OA, data={**REPORT, "actor": member}))
    assert forged.reason.startswith("forged actor: source '/oa/dg-zrzyj' may act for unit:dg-zrzyj only")
    admitted = _door().admit(
        Envelope(type=ReportProgress.TYPE, source=OA, data={**REPORT, "actor": unit_actor}), lambda c: None, topic=None
    )
    assert isinstance(admitted, ReportProgress) and admitted.unit == "dg-zrzyj"


def test_a_rejection_carries_the_command_and_the_rule_that_refused_it() -> None:
    envelope = Envelope(type=ReportProgress.TYPE, source=OA, data=REPORT, extensions={"correlationid": "corr-1"})
    actor = Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj")
    event = rejection(
        UnitReportRejected, envelope, Refusal.of(RuleViolation("unit_handles_proposal", "not yours"), actor), "p-1"
    )
    assert (event.command_id, event.command_source, event.command_type) == (envelope.id, OA, ReportProgress.TYPE)
    assert (event.reason, event.errors, event.actor, event.correlation_id) == (
        "not yours",
        [{"rule": "unit_handles_proposal", "message": "not yours"}],
        actor,
        "corr-1",
    )
    anonymous = rejection(UnitReportRejected, envelope, Refusal("unknown"), "p-1")
    assert anonymous.actor == Actor(id=OA, role=Role.SYSTEM)


def test_intake_leaves_progress_commands_on_the_submissions_topic_and_refuses_unknown_ones() -> None:
    """Intake and progress share `proposalflow.submissions`: each takes its own commands, leaves the
    other's alone (no rejection), and only a type no service takes is refused as unknown."""
    intake = InboundDoor(
        SUBMISSIONS,
        [SubmitProposal, CosignProposal, WithdrawProposal, ResubmitProposal],
        [PORTAL],
        sends="submit proposals",
        noun="submission",
    )
    member = {"id": "m-1", "role": "member"}
    evaluation = Envelope(type=EvaluateReply.TYPE, source=PORTAL, data={"actor": member, "proposal_id": "p-1"})
    assert intake.ignores(evaluation)
    assert not intake.ignores(Envelope(type=CosignProposal.TYPE, source=PORTAL, data={}))
    unknown = Envelope(type="proposalflow.submission.other.v1", source=PORTAL, data={})
    assert not intake.ignores(unknown)
    with pytest.raises(Refusal, match="unknown command type"):
        intake.admit(unknown, lambda command: None, topic=SUBMISSIONS)
    # A command of another topic is not "another service's" here: it was sent to the wrong topic.
    assert not intake.ignores(Envelope(type=ReportProgress.TYPE, source=PORTAL, data={}))


def test_doors_sharing_a_topic_each_leave_the_others_commands_alone_and_one_answers_unknown_types() -> None:
    progress = _door()
    assignment = InboundDoor(
        UNIT_REPORTS, [AcceptAssignment], [OA], sends="send unit reports", noun="unit report", answers_unknown=False
    )
    accept = Envelope(type=AcceptAssignment.TYPE, source=OA, data={})
    report = Envelope(type=ReportProgress.TYPE, source=OA, data={})
    unknown = Envelope(type="proposalflow.unit-report.other.v1", source=OA, data={})
    assert (progress.ignores(accept), progress.ignores(report), progress.ignores(unknown)) == (True, False, False)
    assert (assignment.ignores(accept), assignment.ignores(report), assignment.ignores(unknown)) == (False, True, True)
    refused = _refusal(unknown)
    assert AcceptAssignment.TYPE in refused.reason and ReportProgress.TYPE in refused.reason


# Outside systems bound to their own topics (docs/decisions.md, "Outside systems proven") ----------------

OA_A, OA_B = "/oa/dg-zrzyj", "/oa/dg-czj"
TOPIC_A, TOPIC_B = f"{UNIT_REPORTS}.oa-zrzyj", f"{UNIT_REPORTS}.oa-czj"


def _bound_door() -> InboundDoor:
    return InboundDoor(
        UNIT_REPORTS,
        [ReportProgress],
        [f"oa-zrzyj@{OA_A}=unit:dg-zrzyj", f"oa-czj@{OA_B}=unit:dg-czj", "/oa/legacy=unit:dg-jtj"],
        sends="send unit reports",
        noun="unit report",
    )


def _report(source: str, unit: str, **actor: Any) -> Envelope:
    data = {**REPORT, "unit": unit, "actor": {"id": "u-1", "role": "unit", "unit": unit, **actor}}
    return Envelope(type=ReportProgress.TYPE, source=source, data=data)


def _refused_on(topic: str, envelope: Envelope) -> str:
    with pytest.raises(Refusal) as refused:
        _bound_door().admit(envelope, lambda command: None, topic=topic)
    return refused.value.reason


def test_a_system_may_send_only_its_own_sources_on_its_own_topic() -> None:
    admitted = _bound_door().admit(_report(OA_A, "dg-zrzyj"), lambda command: None, topic=TOPIC_A)
    assert admitted.actor == Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj", via=TOPIC_A)
    # System A, on its own topic, claiming system B's source: the topic proves who sent it.
    assert _refused_on(TOPIC_A, _report(OA_B, "dg-czj")) == (
        f"forged source: topic {TOPIC_A} belongs to system 'oa-zrzyj', but source '{OA_B}' is system "
        "'oa-czj''s: a system may send only under its own sources"
    )
    # A bound source is not taken from the shared topic, which any holder of its old ACL might write.
    assert _refused_on(UNIT_REPORTS, _report(OA_A, "dg-zrzyj")) == (
        f"forged source: source '{OA_A}' belongs to system 'oa-zrzyj', which sends on {TOPIC_A}, "
        f"not on the shared topic {UNIT_REPORTS}"
    )
    # A source bound to no system travels on the shared topic only.
    assert "is not one of its sources" in _refused_on(TOPIC_A, _report("/oa/legacy", "dg-jtj"))
    legacy = _bound_door().admit(_report("/oa/legacy", "dg-jtj"), lambda command: None, topic=UNIT_REPORTS)
    assert legacy.actor.via == UNIT_REPORTS
    # Its own source, another unit: the grant still holds on the system's own topic.
    assert _refused_on(TOPIC_A, _report(OA_A, "dg-czj")).startswith(
        f"forged actor: source '{OA_A}' may act for unit:dg-zrzyj only"
    )
    # `via` is ProposalFlow's to write: a sender cannot pass off its command as another system's.
    assert _refused_on(TOPIC_A, _report(OA_A, "dg-zrzyj", via=TOPIC_B)).startswith("actor.via is set by ProposalFlow")


def test_a_source_belongs_to_one_system_and_system_names_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="names source '/oa/dg-czj' twice, for systems oa-a and oa-b"):
        parse_source_systems(["oa-a@/oa/dg-czj", "oa-b@/oa/dg-czj=unit:dg-czj"])
    assert parse_source_systems(["oa-a@/oa/x=unit:x", "/plain", "mailto:ops@example.org"]) == {
        "/oa/x": "oa-a",
        "/plain": None,
        "mailto:ops@example.org": None,
    }
    assert parse_source_grants(["oa-a@/oa/x=unit:x"]) == {"/oa/x": frozenset({("unit", "x")})}


def test_only_an_outside_systems_own_inbound_topic_may_be_created_for_it() -> None:
    assert outside_system_topic(TOPIC_A) == TOPIC_A
    for wrong in (UNIT_REPORTS, "proposalflow.proposals.oa-a", f"{UNIT_REPORTS}.bad/name", f"{UNIT_REPORTS}."):
        with pytest.raises(ValueError, match="is not an outside system's topic"):
            outside_system_topic(wrong)
