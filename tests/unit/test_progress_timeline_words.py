"""办理全过程 in words: the intake steps a joint or returned proposal goes through (联名确认, 进入审查,
退回修改, 重新提交) read as sentences on the proposal's timeline, never as the event's type name."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import get_args

import pytest

from services.progress import domain
from shared.events import (
    Actor,
    Event,
    ProposalCosigned,
    ProposalCosignRequested,
    ProposalResubmitted,
    ProposalReturned,
    ProposalReviewStarted,
    Proposer,
    Role,
    SessionKind,
    Suggestion,
)

MEMBER = Actor(id="m-1", role=Role.MEMBER)
COSIGNER = Proposer(id="m-2", name="李四")
AT = datetime(2026, 3, 2, 2, tzinfo=UTC)

INTAKE_STEPS: list[tuple[Event, str]] = [
    (
        ProposalCosignRequested(proposal_id="p-1", actor=MEMBER, cosigners=[COSIGNER], due=date(2026, 3, 9)),
        "请附议人确认联名, 联名确认期至 2026-03-09",
    ),
    (ProposalCosigned(proposal_id="p-1", actor=MEMBER, cosigner=COSIGNER, cosigned_at=AT), "李四 已确认联名"),
    (ProposalReviewStarted(proposal_id="p-1", actor=MEMBER, trigger="all_cosigned"), "进入审查 (附议人均已确认)"),
    (ProposalReviewStarted(proposal_id="p-1", actor=MEMBER, trigger="cosign_window_closed"), "进入审查 (联名确认期满)"),
    (ProposalReturned(proposal_id="p-1", actor=MEMBER, reason="请补充数据来源"), "退回修改: 请补充数据来源"),
    (
        ProposalResubmitted(
            proposal_id="p-1",
            actor=MEMBER,
            title="关于推进全域土地综合整治的建议",
            body="正文",
            category="经济建设",
            session_kind=SessionKind.PLENARY,
            suggestions=[Suggestion(number=1, text="编制规划")],
            resubmitted_at=AT,
        ),
        "修改后重新提交: 关于推进全域土地综合整治的建议",
    ),
]


@pytest.mark.parametrize(("event", "words"), INTAKE_STEPS, ids=lambda v: getattr(v, "TYPE", None))
def test_an_intake_step_reads_as_a_sentence_on_the_timeline(event: Event, words: str) -> None:
    assert domain.summary(event) == words
    assert "proposalflow." not in domain.summary(event)


def test_every_review_trigger_has_its_words() -> None:
    triggers = get_args(ProposalReviewStarted.model_fields["trigger"].annotation)
    assert set(domain.REVIEW_TRIGGERS) == set(triggers)
    started = ProposalReviewStarted(proposal_id="p-1", actor=MEMBER, trigger="resubmitted")
    assert domain.timeline_facts(domain.timeline_data(started))["trigger"] == "resubmitted"
