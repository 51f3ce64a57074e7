"""Intake rules: submission and review (提交与审查立案), and the `Proposal` aggregate that applies them.
Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ValidationError

from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import (
    Actor,
    Event,
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
    Suggestion,
)
from shared.policy import Policy, WorkingCalendar, deadline_for, local_date


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


# The aggregate ----------------------------------------------------------------------------------------

SWEEPER = Actor(id="intake-cosign-sweep", role=Role.SYSTEM)
"""The actor of what happens because time passed (the cosign window closing)."""

CHANGED_MEANWHILE = "the proposal changed meanwhile; reload it"


@dataclass(frozen=True)
class ProposalState:
    """提案 at intake as it stands: its content as the first proposer wrote it (a draft's may be
    incomplete: completeness is checked on submission), who submitted it and how, and where its review
    (审查立案) stands. The proposers and suggestions are kept as the JSON they were written in."""

    id: str
    title: str
    body: str
    category: str
    session_kind: str
    first_proposer_id: str
    first_proposer: dict[str, Any]
    """`Proposer`, as JSON."""
    cosigners: tuple[dict[str, Any], ...]
    """The named cosigners (`Proposer`s, as JSON)."""
    suggestions: tuple[dict[str, Any], ...]
    """Numbered suggestions (`{"number": 1, "text": …}`)."""
    series_id: str | None
    status: ProposalStatus
    submitted_by: dict[str, Any]
    """The `Actor` who submitted it, as JSON."""
    submitted_via: str
    submitted_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    filing_number: str | None = None
    review_reason: str | None = None
    reviewed_at: datetime | None = None
    review_started_at: datetime | None = None
    cosign_due: date | None = None
    not_filed_ground: str | None = None
    converted_to_opinion: bool = False
    merged_into: str | None = None
    return_reason: str | None = None
    withdraw_reason: str | None = None


@dataclass(frozen=True)
class Signer:
    """提案者: the first proposer or a cosigner of a proposal; `confirmed_at` is the 联名确认 (the first
    proposer's is its submission)."""

    proposal_id: str
    signer_id: str
    is_first: bool
    confirmed_at: datetime | None


def _draft_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Stored as written: completeness is checked on submission, not while drafting."""
    stored = dict(changes)
    if "suggestions" in stored:
        stored["suggestions"] = [{"number": n, "text": t} for n, t in enumerate(stored["suggestions"], start=1)]
    return _as_stored(stored)


def _as_stored(values: dict[str, Any]) -> dict[str, Any]:
    """Content values as `ProposalState` keeps them: its lists of proposers and suggestions as tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}


def content_values(content: ProposalContent, policy: Policy, actor: Actor) -> dict[str, Any]:
    """Complete content checked against the rules of submission, as it is stored."""
    category_must_be_known(content.category, policy.categories)
    submitter_must_sign(actor, content.first_proposer, content.cosigners)
    suggestions = number_suggestions(content.suggestions)
    return {
        "title": content.title.strip(),
        "body": content.body,
        "category": content.category,
        "session_kind": content.session_kind.value,
        "first_proposer_id": content.first_proposer.id,
        "first_proposer": content.first_proposer.model_dump(mode="json"),
        "cosigners": [cosigner.model_dump(mode="json") for cosigner in content.cosigners],
        "suggestions": [suggestion.model_dump(mode="json") for suggestion in suggestions],
        "series_id": content.series_id,
    }


@dataclass
class Proposal:
    """提案: one proposal at intake with its signers (提案者), the aggregate every intake use case goes
    through. A method checks the rules, changes the proposal and records the events it causes in
    `events` (published by the unit of work with the state, in one transaction). `guard` names the rule
    a concurrent change of status would break: the unit of work saves the proposal only if its status
    is still the one it loaded (a compare-and-set), else it raises StateConflict with that rule."""

    state: ProposalState
    signers: list[Signer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, compare=False, repr=False)
    guard: str = field(default="", compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def status(self) -> ProposalStatus:
        return self.state.status

    def _change(self, **changes: Any) -> None:
        """The state with `changes` (its fields by name): the state is immutable, a change replaces it."""
        self.state = replace(self.state, **changes)

    def _cosign_due(self) -> date:
        """The 联名确认期's last day: a joint proposal awaiting its cosigners has one."""
        due = self.state.cosign_due
        if due is None:
            raise StateConflict("cosign_only_while_awaiting", f"proposal {self.id} has no cosign window")
        return due

    def _confirmed_cosigner_ids(self) -> list[str]:
        return [s.signer_id for s in self.signers if not s.is_first and s.confirmed_at is not None]

    # Creation -------------------------------------------------------------------------------------------

    @classmethod
    def _blank(cls, proposal_id: str, actor: Actor, via: str, now: datetime) -> Proposal:
        return cls(
            ProposalState(
                id=proposal_id,
                title="",
                body="",
                category="",
                session_kind="interim",
                first_proposer_id=actor.id,
                first_proposer={"id": actor.id, "name": actor.id},
                cosigners=(),
                suggestions=(),
                series_id=None,
                status=ProposalStatus.DRAFT,
                submitted_by=actor.model_dump(mode="json"),
                submitted_via=via,
                submitted_at=None,
                created_at=now,
                updated_at=now,
            )
        )

    @classmethod
    def draft(cls, proposal_id: str, changes: dict[str, Any], actor: Actor, now: datetime) -> Proposal:
        """草稿: saved by its first proposer, who may edit it until submitting; nothing is published."""
        changes = dict(changes)
        first = changes.pop("first_proposer", None) or {"id": actor.id, "name": actor.id}
        if first["id"] != actor.id:
            raise RuleViolation(
                "submitter_is_first_proposer", "a draft is yours: first_proposer.id must be your own id"
            )
        proposal = cls._blank(proposal_id, actor, "http", now)
        proposal._change(first_proposer=first, **_draft_changes(changes))
        proposal.signers = [_signer(proposal_id, actor.id, is_first=True, at=None)]
        return proposal

    @classmethod
    def submitted(
        cls,
        proposal_id: str,
        content: ProposalContent,
        actor: Actor,
        policy: Policy,
        *,
        via: str,
        correlation_id: str | None,
        now: datetime,
    ) -> Proposal:
        """提交: a new proposal, complete, enters the system at once."""
        proposal = cls._blank(proposal_id, actor, via, now)
        proposal._enter_system(content, actor, policy, via=via, correlation_id=correlation_id, now=now)
        return proposal

    # The first proposer's steps -----------------------------------------------------------------------

    def visible_to(self, actor: Actor) -> None:
        """A member sees their own proposal (a draft only as its first proposer), the committee every
        proposal that has left its draft. Else NotFound, so a member cannot learn which ids exist."""
        if actor.role == Role.MEMBER:
            if actor.id not in {s.signer_id for s in self.signers}:
                raise NotFound(self.id)
        elif self.status == ProposalStatus.DRAFT:
            raise NotFound(self.id)

    def edit(self, changes: dict[str, Any], actor: Actor, now: datetime) -> None:
        """Edit a draft, or a proposal returned for revision (退回修改); signers are fixed once submitted."""
        self.visible_to(actor)
        only_the_first_proposer(actor, self.state.first_proposer_id)
        edit_only_draft_or_returned(self.status)
        first = changes.get("first_proposer")
        if first is not None and first["id"] != self.state.first_proposer_id:
            raise RuleViolation("first_proposer_fixed", "the first proposer of a proposal cannot be changed")
        if self.status == ProposalStatus.RETURNED and "cosigners" in changes:
            raise RuleViolation(
                "signers_fixed_after_submission",
                "cosigners confirmed the proposal as submitted; they cannot be changed",
            )
        self._change(**_draft_changes(changes), updated_at=now)
        self.guard = "edit_only_draft_or_returned"

    def submit(self, actor: Actor, policy: Policy, *, correlation_id: str | None, now: datetime) -> None:
        """提交 a draft, or resubmit a proposal returned for revision (back to review, cosigners kept)."""
        self.visible_to(actor)
        only_the_first_proposer(actor, self.state.first_proposer_id)
        submit_only_draft_or_returned(self.status)
        self.guard = "submit_only_draft_or_returned"
        content = self.content()
        if self.status == ProposalStatus.DRAFT:
            self._enter_system(content, actor, policy, via="http", correlation_id=correlation_id, now=now)
            return
        values = content_values(content, policy, actor)
        self._change(**_as_stored(values), status=ProposalStatus.SUBMITTED, review_started_at=now, updated_at=now)
        confirmed, unconfirmed = self.signed_cosigners()
        self.events += [
            ProposalResubmitted(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                title=values["title"],
                body=content.body,
                category=content.category,
                session_kind=content.session_kind,
                suggestions=values["suggestions"],
                series_id=content.series_id,
                resubmitted_at=now,
            ),
            ProposalReviewStarted(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                trigger="resubmitted",
                confirmed_cosigners=confirmed,
                unconfirmed_cosigners=unconfirmed,
            ),
        ]

    def _enter_system(
        self,
        content: ProposalContent,
        actor: Actor,
        policy: Policy,
        *,
        via: str,
        correlation_id: str | None,
        now: datetime,
    ) -> None:
        """The moment a proposal leaves its draft: `submitted`; a proposal without cosigners is in review
        from then on, a joint one first asks its cosigners to confirm."""
        values = content_values(content, policy, actor)
        joint = bool(content.cosigners)
        cosign_due = deadline_for(policy, "cosign_window", now) if joint else None
        self._change(
            **_as_stored(values),
            status=ProposalStatus.AWAITING_COSIGNERS if joint else ProposalStatus.SUBMITTED,
            cosign_due=cosign_due,
            review_started_at=None if joint else now,
            submitted_by=actor.model_dump(mode="json"),
            submitted_via=via,
            submitted_at=now,
            updated_at=now,
        )
        self.signers = [
            _signer(self.id, content.first_proposer.id, is_first=True, at=now),
            *(_signer(self.id, c.id, is_first=False, at=None) for c in content.cosigners),
        ]
        self.events.append(
            ProposalSubmitted(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                title=values["title"],
                body=content.body,
                category=content.category,
                session_kind=content.session_kind,
                first_proposer=content.first_proposer,
                cosigners=content.cosigners,
                suggestions=values["suggestions"],
                series_id=content.series_id,
                submitted_at=now,
            )
        )
        if cosign_due is not None:
            self.events.append(
                ProposalCosignRequested(
                    proposal_id=self.id,
                    actor=actor,
                    correlation_id=correlation_id,
                    cosigners=content.cosigners,
                    due=cosign_due,
                    provisional_calendar=WorkingCalendar.from_policy(policy).is_provisional(
                        local_date(now, policy.timezone), cosign_due
                    ),
                )
            )

    def withdraw(self, actor: Actor, *, reason: str, correlation_id: str | None, now: datetime) -> None:
        """撤案 by the first proposer before the committee decides. A draft is withdrawn silently:
        nobody outside intake ever heard of it."""
        self.visible_to(actor)
        only_the_first_proposer(actor, self.state.first_proposer_id)
        was = self.status
        withdraw_only_before_filing(was)
        self._change(status=ProposalStatus.WITHDRAWN, withdraw_reason=reason, updated_at=now)
        self.guard = "withdraw_only_before_filing"
        if was != ProposalStatus.DRAFT:
            self.events.append(
                ProposalWithdrawn(proposal_id=self.id, actor=actor, correlation_id=correlation_id, reason=reason)
            )

    # Cosigners ------------------------------------------------------------------------------------------

    def cosign(self, actor: Actor, policy: Policy, *, correlation_id: str | None, now: datetime) -> None:
        """联名确认: a named cosigner confirms; when the last one does, the proposal goes to review."""
        self.visible_to(actor)
        cosign_only_while_awaiting(self.status)
        cosigner_ids = [c["id"] for c in self.state.cosigners]
        confirmed_ids = self._confirmed_cosigner_ids()
        cosigner_must_be_named(actor.id, cosigner_ids, confirmed_ids)
        today = local_date(now, policy.timezone)
        due = self._cosign_due()
        if not cosign_window_open(today, due):
            raise StateConflict(
                "cosign_window_open",
                f"the cosign window (联名确认期) closed after {due.isoformat()}",
            )
        self.signers = [replace(s, confirmed_at=now) if s.signer_id == actor.id else s for s in self.signers]
        self.guard = "cosign_only_while_awaiting"
        cosigner = next(Proposer.model_validate(c) for c in self.state.cosigners if c["id"] == actor.id)
        self.events.append(
            ProposalCosigned(
                proposal_id=self.id, actor=actor, correlation_id=correlation_id, cosigner=cosigner, cosigned_at=now
            )
        )
        if ready_for_review(cosigner_ids, [*confirmed_ids, actor.id], today, due):
            self._start_review("all_cosigned", actor, correlation_id, now)

    def close_cosign_window(self, today: date, now: datetime) -> bool:
        """The 联名确认期 has closed: the proposal goes to review with whoever confirmed. False if it is
        not awaiting cosigners or its window is still open."""
        if self.status != ProposalStatus.AWAITING_COSIGNERS or cosign_window_open(today, self._cosign_due()):
            return False
        self.guard = "cosign_only_while_awaiting"
        self._start_review("cosign_window_closed", SWEEPER, None, now)
        return True

    def _start_review(
        self,
        trigger: Literal["all_cosigned", "cosign_window_closed"],
        actor: Actor,
        correlation_id: str | None,
        now: datetime,
    ) -> None:
        """Awaiting cosigners → in review."""
        self._change(status=ProposalStatus.SUBMITTED, review_started_at=now, updated_at=now)
        confirmed, unconfirmed = self.signed_cosigners()
        self.events.append(
            ProposalReviewStarted(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                trigger=trigger,
                confirmed_cosigners=confirmed,
                unconfirmed_cosigners=unconfirmed,
            )
        )

    # 审查立案 --------------------------------------------------------------------------------------------

    def may_be_reviewed(self) -> None:
        """Only a submitted proposal is reviewed (before a filing number is taken for it)."""
        review_may_decide(self.status)

    def file(
        self,
        number: str,
        merged_ids: list[str],
        actor: Actor,
        *,
        reason: str | None,
        correlation_id: str | None,
        now: datetime,
    ) -> None:
        """立案 under a filing number (案号); the proposals merged into it travel with it."""
        self.may_be_reviewed()
        confirmed, _ = self.signed_cosigners()
        self._decided(ProposalStatus.FILED, reason, now, filing_number=number)
        self.events.append(
            ProposalFiled(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                filing_number=number,
                title=self.state.title,
                category=self.state.category,
                first_proposer=Proposer.model_validate(self.state.first_proposer),
                cosigners=confirmed,
                suggestion_count=len(self.state.suggestions),
                filed_at=now,
                merged_proposal_ids=merged_ids,
            )
        )

    def not_file(
        self,
        actor: Actor,
        policy: Policy,
        *,
        reason: str | None,
        ground: str | None,
        converted_to_opinion: bool,
        correlation_id: str | None,
        now: datetime,
    ) -> None:
        """不予立案 on one of the policy's grounds, optionally 转意见建议."""
        self.may_be_reviewed()
        chosen = not_filed_needs_reason_and_ground(reason, ground, policy.not_filed_grounds)
        self._decided(
            ProposalStatus.NOT_FILED, reason, now, not_filed_ground=chosen, converted_to_opinion=converted_to_opinion
        )
        self.events.append(
            ProposalNotFiled(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                reason=reason or "",
                ground=chosen,
                converted_to_opinion=converted_to_opinion,
            )
        )

    def merge(
        self,
        into_proposal_id: str | None,
        into: Proposal | None,
        actor: Actor,
        *,
        reason: str | None,
        correlation_id: str | None,
        now: datetime,
    ) -> None:
        """并案 into another proposal in review or filed (`into`: None if unknown or a draft)."""
        self.may_be_reviewed()
        if not into_proposal_id:
            raise RuleViolation("merge_needs_target", "name the proposal to merge into (into_proposal_id)")
        merge_target_must_be_open(self.id, into_proposal_id, None if into is None else into.status)
        assert into is not None
        confirmed, _ = self.signed_cosigners()
        self._decided(ProposalStatus.MERGED, reason, now, merged_into=into_proposal_id)
        self.events.append(
            ProposalMerged(
                proposal_id=self.id,
                actor=actor,
                correlation_id=correlation_id,
                into_proposal_id=into_proposal_id,
                reason=reason or "",
                into_filing_number=into.state.filing_number,
                first_proposer=Proposer.model_validate(self.state.first_proposer),
                cosigners=confirmed,
            )
        )

    def return_for_revision(
        self, actor: Actor, *, reason: str | None, correlation_id: str | None, now: datetime
    ) -> None:
        """退回修改: back to the first proposer, who edits and resubmits it."""
        self.may_be_reviewed()
        note = return_needs_reason(reason)
        self._decided(ProposalStatus.RETURNED, reason, now, return_reason=note, reviewed_at=None)
        self.events.append(
            ProposalReturned(proposal_id=self.id, actor=actor, correlation_id=correlation_id, reason=note)
        )

    def _decided(self, status: ProposalStatus, reason: str | None, now: datetime, **changes: Any) -> None:
        self._change(**{"reviewed_at": now, "review_reason": reason, "updated_at": now, **changes, "status": status})
        self.guard = "review_only_submitted"

    # Reading --------------------------------------------------------------------------------------------

    def content(self) -> ProposalContent:
        """A stored draft (or returned proposal) as complete content, or the rule it does not meet yet."""
        state = self.state
        try:
            return ProposalContent.model_validate(
                {
                    "title": state.title,
                    "body": state.body,
                    "category": state.category,
                    "session_kind": state.session_kind,
                    "first_proposer": state.first_proposer,
                    "cosigners": list(state.cosigners),
                    "suggestions": [s["text"] for s in state.suggestions],
                    "series_id": state.series_id,
                }
            )
        except ValidationError as exc:
            missing = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise RuleViolation("content_complete", f"the proposal is not complete yet: {missing}") from exc

    def signed_cosigners(self) -> tuple[list[Proposer], list[Proposer]]:
        """The cosigners who confirmed, and those who did not (yet)."""
        confirmed_ids = set(self._confirmed_cosigner_ids())
        named = [Proposer.model_validate(c) for c in self.state.cosigners]
        return [c for c in named if c.id in confirmed_ids], [c for c in named if c.id not in confirmed_ids]


def _signer(proposal_id: str, signer_id: str, *, is_first: bool, at: datetime | None) -> Signer:
    return Signer(proposal_id, signer_id, is_first, at)
