"""Intake rules: submission and review (提交与审查立案). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from enum import StrEnum

from shared.errors import RuleViolation, StateConflict
from shared.events import Actor, Proposer, Role, Suggestion


class ProposalStatus(StrEnum):
    """Where a proposal stands at intake."""

    DRAFT = "draft"  # 草稿: private to its first proposer, never leaves intake
    AWAITING_COSIGNERS = "awaiting_cosigners"  # 联名确认中
    SUBMITTED = "submitted"  # 已提交, in review (审查中)
    FILED = "filed"  # 立案
    NOT_FILED = "not_filed"  # 不予立案
    MERGED = "merged"  # 并案
    RETURNED = "returned"  # 退回修改
    WITHDRAWN = "withdrawn"  # 撤案


EDITABLE = (ProposalStatus.DRAFT, ProposalStatus.RETURNED)
BEFORE_FILING = (
    ProposalStatus.DRAFT,
    ProposalStatus.AWAITING_COSIGNERS,
    ProposalStatus.SUBMITTED,
    ProposalStatus.RETURNED,
)
MERGE_TARGETS = (ProposalStatus.SUBMITTED, ProposalStatus.FILED)


def number_suggestions(texts: Sequence[str]) -> list[Suggestion]:
    """建议 are numbered from 1 in the order the proposer wrote them."""
    cleaned = [text.strip() for text in texts]
    empty = [index + 1 for index, text in enumerate(cleaned) if not text]
    if empty:
        raise RuleViolation("suggestion_not_empty", f"suggestion(s) {empty} are empty; remove them or write them out")
    return [Suggestion(number=index + 1, text=text) for index, text in enumerate(cleaned)]


def category_must_be_known(category: str, categories: Sequence[str]) -> None:
    if category not in categories:
        raise RuleViolation("category_known", f"unknown category {category!r}; use one of: {', '.join(categories)}")


def submitter_must_sign(actor: Actor, first_proposer: Proposer, cosigners: Sequence[Proposer]) -> None:
    """A member submits their own proposal; outside systems and the committee may submit for a member."""
    if actor.role == Role.MEMBER and actor.id != first_proposer.id:
        raise RuleViolation(
            "submitter_is_first_proposer",
            "a member submits as the first proposer: first_proposer.id must be your own id",
        )
    ids = [first_proposer.id, *(cosigner.id for cosigner in cosigners)]
    duplicates = sorted({signer for signer in ids if ids.count(signer) > 1})
    if duplicates:
        raise RuleViolation("signers_distinct", f"each signer signs once; repeated: {', '.join(duplicates)}")


def review_may_decide(status: ProposalStatus) -> None:
    """审查: only a submitted proposal is reviewed; a decision is final."""
    if status != ProposalStatus.SUBMITTED:
        raise StateConflict(
            "review_only_submitted", f"the proposal is {status.value}; only a submitted proposal can be reviewed"
        )


def edit_only_draft_or_returned(status: ProposalStatus) -> None:
    """A proposal is edited while it is a draft, or after it was returned for revision (退回修改)."""
    if status not in EDITABLE:
        raise StateConflict(
            "edit_only_draft_or_returned",
            f"the proposal is {status.value}; only a draft or a proposal returned for revision can be edited",
        )


def submit_only_draft_or_returned(status: ProposalStatus) -> None:
    """提交 a draft, or resubmit a proposal returned for revision; anything else is already in the system."""
    if status not in EDITABLE:
        raise StateConflict(
            "submit_only_draft_or_returned",
            f"the proposal is {status.value}; only a draft or a returned proposal can be submitted",
        )


def withdraw_only_before_filing(status: ProposalStatus) -> None:
    """撤案: the first proposer may withdraw until the committee has decided (立案 is final)."""
    if status not in BEFORE_FILING:
        raise StateConflict(
            "withdraw_only_before_filing",
            f"the proposal is {status.value}; a proposal can be withdrawn only before the committee decides",
        )


def only_the_first_proposer(actor: Actor, first_proposer_id: str) -> None:
    """A member changes only their own proposal: the first proposer edits, submits and withdraws it."""
    if actor.role == Role.MEMBER and actor.id != first_proposer_id:
        raise RuleViolation(
            "only_the_first_proposer", "only the proposal's first proposer may do this; cosigners may only cosign"
        )


def cosign_only_while_awaiting(status: ProposalStatus) -> None:
    """联名确认 happens between submission and review."""
    if status != ProposalStatus.AWAITING_COSIGNERS:
        raise StateConflict(
            "cosign_only_while_awaiting",
            f"the proposal is {status.value}; cosigners confirm only while it awaits their confirmation",
        )


def cosigner_must_be_named(actor_id: str, cosigner_ids: Sequence[str], confirmed_ids: Sequence[str]) -> None:
    """Only a cosigner the first proposer named confirms, and once."""
    if actor_id not in cosigner_ids:
        raise RuleViolation("cosigner_named", "you are not named as a cosigner of this proposal")
    if actor_id in confirmed_ids:
        raise StateConflict("cosign_once", "you have already confirmed this proposal")


def cosign_window_open(today: date, due: date) -> bool:
    """联名确认期: the due date is the last day a cosigner may confirm; the window closes the day after."""
    return today <= due


def ready_for_review(cosigner_ids: Sequence[str], confirmed_ids: Sequence[str], today: date, due: date) -> bool:
    """A joint proposal goes to review once every cosigner confirmed, or when the window has closed."""
    return set(cosigner_ids) <= set(confirmed_ids) or not cosign_window_open(today, due)


def not_filed_needs_reason_and_ground(reason: str | None, ground: str | None, grounds: Sequence[str]) -> str:
    """不予立案 needs a note for the proposers and one of the policy's grounds; returns the ground."""
    if not reason or not reason.strip():
        raise RuleViolation("not_filed_needs_reason", "a proposal not filed needs a reason for its proposers")
    if ground is None or ground not in grounds:
        raise RuleViolation(
            "not_filed_ground_known",
            f"不予立案 needs one of the configured grounds: {', '.join(grounds)}; got {ground!r}",
        )
    return ground


def return_needs_reason(reason: str | None) -> str:
    """退回修改: the proposer must be told what to revise."""
    if not reason or not reason.strip():
        raise RuleViolation("return_needs_reason", "say what the proposer should revise")
    return reason.strip()


def merge_target_must_be_open(proposal_id: str, target_id: str, target_status: ProposalStatus | None) -> None:
    """并案: merge into another proposal that is in review or filed, never into itself."""
    if target_id == proposal_id:
        raise RuleViolation("merge_into_another", "a proposal cannot be merged into itself")
    if target_status is None:
        raise RuleViolation("merge_target_exists", f"no proposal {target_id!r} to merge into")
    if target_status not in MERGE_TARGETS:
        raise StateConflict(
            "merge_target_open",
            f"proposal {target_id} is {target_status.value}; merge only into a submitted or filed proposal",
        )


def filing_number(year: int, sequence: int) -> str:
    """案号: the year and a sequence within it, e.g. 2026-0007."""
    return f"{year}-{sequence:04d}"
