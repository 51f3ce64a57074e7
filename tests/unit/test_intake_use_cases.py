"""Intake's use cases on the in-memory unit of work: load → decide → save, with no database.

What a user notices: the status a proposal shows, the events the other services receive, and that a
refused or overtaken step leaves nothing behind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.intake import service
from services.intake.domain import Proposal, ProposalStatus
from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import (
    Actor,
    ProposalContent,
    ProposalCosigned,
    ProposalCosignRequested,
    ProposalFiled,
    ProposalMerged,
    ProposalNotFiled,
    ProposalResubmitted,
    ProposalReturned,
    ProposalReviewStarted,
    ProposalSubmitted,
    ProposalWithdrawn,
    Proposer,
    Role,
)
from shared.policy import default_policy
from tests.intake_fakes import FakeUnitOfWork

POLICY = default_policy()
NOW = datetime(2026, 3, 16, 2, tzinfo=UTC)
MEMBER = Actor(id="m-1", role=Role.MEMBER)
COSIGNER = Actor(id="m-2", role=Role.MEMBER)
STRANGER = Actor(id="m-7", role=Role.MEMBER)
COMMITTEE = Actor(id="c-1", role=Role.COMMITTEE)
JOINT = ProposalContent(
    title="关于推进全域土地综合整治的建议",
    body="我市土地利用碎片化, 建议统筹推进全域土地综合整治。",
    category="经济建设",
    first_proposer=Proposer(id="m-1", name="张三"),
    cosigners=[Proposer(id="m-2", name="李四"), Proposer(id="m-3", name="王五")],
    suggestions=["编制整治规划", "设立专项资金"],
)
SOLO = JOINT.model_copy(update={"cosigners": []})


async def submitted(uow: FakeUnitOfWork, content: ProposalContent = SOLO, proposal_id: str = "p-1") -> str:
    return await service.submit(
        uow, content, MEMBER, POLICY, via="http", correlation_id="corr-1", proposal_id=proposal_id, now=NOW
    )


async def review(uow: FakeUnitOfWork, proposal_id: str, decision: str, **more: object) -> str:
    return await service.review(
        uow,
        proposal_id,
        decision=decision,  # type: ignore[arg-type]
        reason=more.pop("reason", "理由"),  # type: ignore[arg-type]
        actor=COMMITTEE,
        policy=POLICY,
        correlation_id=None,
        now=NOW,
        **more,  # type: ignore[arg-type]
    )


async def test_a_solo_proposal_is_in_review_from_its_submission() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow)
    proposal = uow.proposal("p-1")
    assert (proposal.status, proposal.state.review_started_at, proposal.state.cosign_due) == (
        ProposalStatus.SUBMITTED,
        NOW,
        None,
    )
    [event] = uow.outbox
    assert isinstance(event, ProposalSubmitted)
    assert ([s.number for s in event.suggestions], event.correlation_id) == ([1, 2], "corr-1")


async def test_a_joint_proposal_goes_to_review_when_the_last_cosigner_confirms() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow, JOINT)
    assert uow.types() == [ProposalSubmitted.TYPE, ProposalCosignRequested.TYPE]
    assert uow.proposal("p-1").status == ProposalStatus.AWAITING_COSIGNERS
    await service.cosign(uow, "p-1", COSIGNER, POLICY, correlation_id=None, now=NOW)
    assert uow.proposal("p-1").status == ProposalStatus.AWAITING_COSIGNERS
    with pytest.raises(StateConflict) as twice:
        await service.cosign(uow, "p-1", COSIGNER, POLICY, correlation_id=None, now=NOW)
    assert twice.value.rule == "cosign_once"
    await service.cosign(uow, "p-1", Actor(id="m-3", role=Role.MEMBER), POLICY, correlation_id=None, now=NOW)
    assert uow.types()[2:] == [ProposalCosigned.TYPE, ProposalCosigned.TYPE, ProposalReviewStarted.TYPE]
    started = uow.outbox[-1]
    assert isinstance(started, ProposalReviewStarted)
    assert (started.trigger, [c.id for c in started.confirmed_cosigners]) == ("all_cosigned", ["m-2", "m-3"])
    assert uow.proposal("p-1").status == ProposalStatus.SUBMITTED


async def test_the_sweep_sends_a_joint_proposal_to_review_once_its_window_closed() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow, JOINT)
    await service.cosign(uow, "p-1", COSIGNER, POLICY, correlation_id=None, now=NOW)
    due: date = uow.proposal("p-1").state.cosign_due
    on_the_last_day = datetime(due.year, due.month, due.day, 2, tzinfo=UTC)
    assert await service.close_cosign_windows(uow, POLICY, now=on_the_last_day) == []
    day_after = on_the_last_day + timedelta(days=1)
    with pytest.raises(StateConflict) as late:
        await service.cosign(uow, "p-1", Actor(id="m-3", role=Role.MEMBER), POLICY, correlation_id=None, now=day_after)
    assert late.value.rule == "cosign_window_open"
    assert await service.close_cosign_windows(uow, POLICY, now=day_after) == ["p-1"]
    started = uow.outbox[-1]
    assert isinstance(started, ProposalReviewStarted)
    assert (started.trigger, started.actor.id) == ("cosign_window_closed", "intake-cosign-sweep")
    assert ([c.id for c in started.confirmed_cosigners], [c.id for c in started.unconfirmed_cosigners]) == (
        ["m-2"],
        ["m-3"],
    )
    assert await service.close_cosign_windows(uow, POLICY, now=day_after) == []  # moved once


async def test_a_draft_stays_inside_intake_until_submitted() -> None:
    uow = FakeUnitOfWork()
    draft_id = await service.create_draft(uow, {"title": "草稿标题"}, MEMBER, now=NOW)
    with pytest.raises(RuleViolation) as incomplete:
        await service.submit_existing(uow, draft_id, MEMBER, POLICY, correlation_id=None, now=NOW)
    assert incomplete.value.rule == "content_complete"
    changes = SOLO.model_dump(mode="json", exclude={"first_proposer"})
    await service.edit(uow, draft_id, changes, MEMBER, now=NOW)
    assert uow.outbox == []  # a draft and its edits publish nothing
    with pytest.raises(NotFound):  # a committee member never sees a draft
        await review(uow, draft_id, "file")
    await service.submit_existing(uow, draft_id, MEMBER, POLICY, correlation_id=None, now=NOW)
    assert uow.types() == [ProposalSubmitted.TYPE]
    assert uow.proposal(draft_id).state.suggestions == (
        {"number": 1, "text": "编制整治规划"},
        {"number": 2, "text": "设立专项资金"},
    )


async def test_a_withdrawn_draft_is_silent_a_withdrawn_proposal_is_announced() -> None:
    uow = FakeUnitOfWork()
    draft_id = await service.create_draft(uow, {}, MEMBER, now=NOW)
    await service.withdraw(uow, draft_id, MEMBER, reason="", correlation_id=None, now=NOW)
    assert (uow.proposal(draft_id).status, uow.outbox) == (ProposalStatus.WITHDRAWN, [])
    await submitted(uow)
    with pytest.raises(NotFound):  # a stranger cannot learn the proposal exists
        await service.withdraw(uow, "p-1", STRANGER, reason="", correlation_id=None, now=NOW)
    await service.withdraw(uow, "p-1", MEMBER, reason="情况已变化", correlation_id=None, now=NOW)
    assert uow.types()[-1] == ProposalWithdrawn.TYPE
    with pytest.raises(StateConflict) as after:
        await review(uow, "p-1", "file")
    assert after.value.rule == "review_only_submitted"


async def test_filing_numbers_follow_each_other_and_carry_the_merged_proposals() -> None:
    uow = FakeUnitOfWork()
    for proposal_id in ("p-1", "p-2", "p-3"):
        await submitted(uow, proposal_id=proposal_id)
    await review(uow, "p-2", "merge", into_proposal_id="p-1")
    await review(uow, "p-1", "file")
    await review(uow, "p-3", "file")
    merged, first, second = uow.outbox[-3:]
    assert isinstance(merged, ProposalMerged) and merged.into_filing_number is None
    assert isinstance(first, ProposalFiled) and isinstance(second, ProposalFiled)
    assert (first.filing_number, first.merged_proposal_ids, second.filing_number) == ("2026-0001", ["p-2"], "2026-0002")
    await submitted(uow, proposal_id="p-4")
    with pytest.raises(RuleViolation) as itself:
        await review(uow, "p-4", "merge", into_proposal_id="p-4")
    assert itself.value.rule == "merge_into_another"


async def test_not_filed_needs_a_known_ground() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow)
    with pytest.raises(RuleViolation) as unknown:
        await review(uow, "p-1", "not_file", ground="no such ground")
    assert (unknown.value.rule, uow.types()) == ("not_filed_ground_known", [ProposalSubmitted.TYPE])
    ground = POLICY.not_filed_grounds[0]
    await review(uow, "p-1", "not_file", ground=ground, converted_to_opinion=True)
    refused = uow.outbox[-1]
    assert isinstance(refused, ProposalNotFiled)
    assert (refused.ground, refused.converted_to_opinion) == (ground, True)
    assert uow.proposal("p-1").status == ProposalStatus.NOT_FILED


async def test_a_returned_proposal_is_revised_and_resubmitted_with_its_cosigners() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow, JOINT)
    await service.cosign(uow, "p-1", COSIGNER, POLICY, correlation_id=None, now=NOW)
    await service.cosign(uow, "p-1", Actor(id="m-3", role=Role.MEMBER), POLICY, correlation_id=None, now=NOW)
    await review(uow, "p-1", "return", reason="请补充资金来源")
    assert isinstance(uow.outbox[-1], ProposalReturned)
    with pytest.raises(RuleViolation) as fixed:
        await service.edit(uow, "p-1", {"cosigners": []}, MEMBER, now=NOW)
    assert fixed.value.rule == "signers_fixed_after_submission"
    await service.edit(uow, "p-1", {"body": "补充了资金来源: 市级财政专项。"}, MEMBER, now=NOW)
    await service.submit_existing(uow, "p-1", MEMBER, POLICY, correlation_id="corr-2", now=NOW)
    resubmitted, started = uow.outbox[-2:]
    assert isinstance(resubmitted, ProposalResubmitted) and isinstance(started, ProposalReviewStarted)
    assert (resubmitted.body, started.trigger) == ("补充了资金来源: 市级财政专项。", "resubmitted")
    assert [c.id for c in started.confirmed_cosigners] == ["m-2", "m-3"]
    assert uow.proposal("p-1").status == ProposalStatus.SUBMITTED


async def test_a_proposal_id_is_used_once() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow)
    with pytest.raises(RuleViolation) as again:
        await submitted(uow, JOINT)
    assert (again.value.rule, len(uow.outbox)) == ("proposal_id_unique", 1)
    assert uow.proposal("p-1").state.cosigners == ()


def _withdrawn_meanwhile(stored: dict[str, Proposal]) -> None:
    stored["p-1"].state = replace(stored["p-1"].state, status=ProposalStatus.WITHDRAWN)


async def test_a_review_overtaken_by_a_withdrawal_saves_and_publishes_nothing() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow)
    uow.outbox.clear()
    uow.meanwhile = _withdrawn_meanwhile
    with pytest.raises(StateConflict) as overtaken:
        await review(uow, "p-1", "not_file", ground=POLICY.not_filed_grounds[0])
    assert (overtaken.value.rule, uow.outbox) == ("review_only_submitted", [])
    assert uow.proposal("p-1").state.not_filed_ground is None


async def test_the_sweep_leaves_a_proposal_a_concurrent_request_moved_and_moves_the_others() -> None:
    uow = FakeUnitOfWork()
    await submitted(uow, JOINT)
    await submitted(uow, JOINT, proposal_id="p-2")
    uow.outbox.clear()
    uow.meanwhile = _withdrawn_meanwhile
    later = NOW + timedelta(days=30)
    assert await service.close_cosign_windows(uow, POLICY, now=later) == ["p-2"]
    assert uow.proposal("p-1").status == ProposalStatus.WITHDRAWN
    assert (uow.proposal("p-2").status, uow.types()) == (ProposalStatus.SUBMITTED, [ProposalReviewStarted.TYPE])
    assert uow.outbox[0].proposal_id == "p-2"
