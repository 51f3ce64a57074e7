"""The lifecycle of a proposal as progress sees it (DESIGN.md §1), and its timeline. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from shared.events import (
    AssignmentAccepted,
    AssignmentDisputed,
    AssignmentSuggested,
    Event,
    ProposalAssigned,
    ProposalClosed,
    ProposalFiled,
    ProposalMerged,
    ProposalNotFiled,
    ProposalSubmitted,
    ProposalWithdrawn,
    RehandlingStarted,
    ReplyApproved,
    ReplyDrafted,
    ReplyReturned,
)


class Stage(StrEnum):
    """办理阶段."""

    SUBMITTED = "submitted"  # 已提交
    FILED = "filed"  # 已立案
    NOT_FILED = "not_filed"  # 不予立案
    MERGED = "merged"  # 并案
    WITHDRAWN = "withdrawn"  # 撤案
    ASSIGNED = "assigned"  # 已交办
    HANDLING = "handling"  # 办理中
    REPLY_REVIEW = "reply_review"  # 办复审查
    ANSWERED = "answered"  # 已答复
    CLOSED = "closed"  # 办结


_STAGE_AFTER: dict[type[Event], Stage] = {
    ProposalSubmitted: Stage.SUBMITTED,
    ProposalFiled: Stage.FILED,
    ProposalNotFiled: Stage.NOT_FILED,
    ProposalMerged: Stage.MERGED,
    ProposalWithdrawn: Stage.WITHDRAWN,
    ProposalAssigned: Stage.ASSIGNED,
    AssignmentAccepted: Stage.HANDLING,
    ReplyDrafted: Stage.REPLY_REVIEW,
    ReplyApproved: Stage.ANSWERED,
    ReplyReturned: Stage.HANDLING,
    RehandlingStarted: Stage.HANDLING,
    ProposalClosed: Stage.CLOSED,
}

# A later stage never goes back to an earlier one because an older event arrives late.
_ORDER = [
    Stage.SUBMITTED,
    Stage.FILED,
    Stage.ASSIGNED,
    Stage.HANDLING,
    Stage.REPLY_REVIEW,
    Stage.ANSWERED,
    Stage.CLOSED,
]
_BACKWARD_ALLOWED = {(Stage.REPLY_REVIEW, Stage.HANDLING), (Stage.ANSWERED, Stage.HANDLING)}
_FINAL = {Stage.NOT_FILED, Stage.MERGED, Stage.WITHDRAWN}


def next_stage(current: Stage | None, event: Event) -> Stage | None:
    """The stage after `event`, or `current` when the event does not move it."""
    target = _STAGE_AFTER.get(type(event))
    if target is None or current is None:
        return target or current
    if current in _FINAL:
        return current
    if target in _FINAL:
        return target
    if (current, target) in _BACKWARD_ALLOWED:
        return target
    if current in _ORDER and target in _ORDER and _ORDER.index(target) < _ORDER.index(current):
        return current
    return target


def summary(event: Event) -> str:
    """One line of the timeline, in the office's language."""
    match event:
        case ProposalSubmitted():
            return f"提案已提交: {event.title}"
        case ProposalFiled():
            return f"已立案, 案号 {event.filing_number}"
        case ProposalNotFiled():
            return f"不予立案: {event.reason}"
        case ProposalMerged():
            return f"并案至 {event.into_proposal_id}"
        case ProposalWithdrawn():
            return "提案已撤回"
        case AssignmentSuggested():
            return f"交办建议: 主办 {event.lead_unit.name}"
        case ProposalAssigned():
            co = "、".join(unit.name for unit in event.co_units)
            return (
                f"已交办: 主办 {event.lead_unit.name}"
                + (f", 会办 {co}" if co else "")
                + f", 办复期限 {event.reply_due.isoformat()}"
            )
        case AssignmentAccepted():
            return f"{event.unit.name} 已签收"
        case AssignmentDisputed():
            return f"{event.unit.name} 提出异议: {event.reason}"
        case _:
            return event.TYPE


def timeline_data(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude={"actor", "correlation_id", "proposal_id"})
