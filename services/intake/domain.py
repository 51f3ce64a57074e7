"""Intake rules: submission and review (提交与审查立案). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from shared.events import Actor, Proposer, Role, Suggestion


class ProposalStatus(StrEnum):
    """Where a proposal stands at intake."""

    SUBMITTED = "submitted"  # 已提交, awaiting review
    FILED = "filed"  # 立案
    NOT_FILED = "not_filed"  # 不予立案
    MERGED = "merged"  # 并案
    WITHDRAWN = "withdrawn"  # 撤案


class RuleViolation(Exception):
    """A request that breaks a named rule; the message says which and what to do instead."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class StateConflict(RuleViolation):
    """The request is fine but the proposal is not in a state that allows it."""


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


def filing_number(year: int, sequence: int) -> str:
    """案号: the year and a sequence within it, e.g. 2026-0007."""
    return f"{year}-{sequence:04d}"
