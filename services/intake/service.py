"""Intake's use cases, shared by both doors (HTTP and the `proposalflow.submissions` topic).

Each reads as: load → decide (domain) → save state and events in the caller's transaction. Time comes
from the caller (`now`), so the cosign window can be driven by a fake clock in tests.

Lifecycle: draft → (submit) → awaiting_cosigners (joint proposals) → submitted (in review) →
filed | not_filed | merged | returned (→ edit → resubmit → submitted) ; withdrawn before filing.
Drafts never leave intake: the first event downstream sees of a proposal is always `submitted`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import domain, similarity, store
from services.intake.domain import ProposalStatus
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
)
from shared.outbox import add_to_outbox
from shared.policy import Policy, deadline_for, local_date

SERVICE = "intake"
SWEEPER = Actor(id="intake-cosign-sweep", role=Role.SYSTEM)
"""The actor of what happens because time passed (the cosign window closing)."""

Clock = Callable[[], datetime]
ReviewKind = Literal["file", "not_file", "merge", "return"]


def system_clock() -> datetime:
    return datetime.now(UTC)


async def _emit(conn: AsyncConnection, events: list[Event]) -> None:
    await add_to_outbox(conn, store.metadata, SERVICE, events)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def proposal_view(row: dict[str, Any], signers: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A proposal as the API shows it; `confirmed_cosigners` says who has confirmed (联名确认)."""
    confirmed = sorted(s["signer_id"] for s in signers if not s["is_first"] and s["confirmed_at"] is not None)
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "category": row["category"],
        "session_kind": row["session_kind"],
        "first_proposer": row["first_proposer"],
        "cosigners": row["cosigners"],
        "confirmed_cosigners": confirmed,
        "suggestions": row["suggestions"],
        "series_id": row["series_id"],
        "status": row["status"],
        "cosign_due": _iso(row["cosign_due"]),
        "filing_number": row["filing_number"],
        "review_reason": row["review_reason"],
        "not_filed_ground": row["not_filed_ground"],
        "converted_to_opinion": row["converted_to_opinion"],
        "merged_into": row["merged_into"],
        "return_reason": row["return_reason"],
        "withdraw_reason": row["withdraw_reason"],
        "created_at": _iso(row["created_at"]),
        "submitted_at": _iso(row["submitted_at"]),
        "review_started_at": _iso(row["review_started_at"]),
        "reviewed_at": _iso(row["reviewed_at"]),
    }


async def view(conn: AsyncConnection, proposal_id: str) -> dict[str, Any]:
    row = await store.get_proposal(conn, proposal_id)
    if row is None:
        raise NotFound(proposal_id)
    return proposal_view(row, await store.get_signers(conn, proposal_id))


async def visible_to(conn: AsyncConnection, proposal_id: str, actor: Actor) -> dict[str, Any]:
    """The proposal if the caller may see it: a member sees their own (a draft only as its first
    proposer), the committee everything that has left its draft. Else NotFound, so that a member
    cannot learn which ids exist."""
    row = await store.get_proposal(conn, proposal_id)
    if row is None:
        raise NotFound(proposal_id)
    if actor.role == Role.MEMBER:
        if actor.id not in {s["signer_id"] for s in await store.get_signers(conn, proposal_id)}:
            raise NotFound(proposal_id)
    elif row["status"] == ProposalStatus.DRAFT.value:
        raise NotFound(proposal_id)
    return row


def _signed_cosigners(row: dict[str, Any], signers: Sequence[dict[str, Any]]) -> tuple[list[Proposer], list[Proposer]]:
    """The cosigners who confirmed, and those who did not (yet)."""
    confirmed_ids = {s["signer_id"] for s in signers if not s["is_first"] and s["confirmed_at"] is not None}
    named = [Proposer.model_validate(c) for c in row["cosigners"]]
    return [c for c in named if c.id in confirmed_ids], [c for c in named if c.id not in confirmed_ids]


def _content_of(row: dict[str, Any]) -> ProposalContent:
    """A stored draft (or returned proposal) as complete content, or the rule it does not meet yet."""
    try:
        return ProposalContent.model_validate(
            {
                "title": row["title"],
                "body": row["body"],
                "category": row["category"],
                "session_kind": row["session_kind"],
                "first_proposer": row["first_proposer"],
                "cosigners": row["cosigners"],
                "suggestions": [s["text"] for s in row["suggestions"]],
                "series_id": row["series_id"],
            }
        )
    except ValidationError as exc:
        missing = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise RuleViolation("content_complete", f"the proposal is not complete yet: {missing}") from exc


def _content_values(content: ProposalContent, policy: Policy, actor: Actor) -> dict[str, Any]:
    domain.category_must_be_known(content.category, policy.categories)
    domain.submitter_must_sign(actor, content.first_proposer, content.cosigners)
    suggestions = domain.number_suggestions(content.suggestions)
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


_REVIEW_FIELDS: dict[str, Any] = {
    "filing_number": None,
    "review_reason": None,
    "reviewed_at": None,
    "review_started_at": None,
    "cosign_due": None,
    "not_filed_ground": None,
    "converted_to_opinion": False,
    "merged_into": None,
    "return_reason": None,
    "withdraw_reason": None,
}


async def submit(
    conn: AsyncConnection,
    content: ProposalContent,
    actor: Actor,
    policy: Policy,
    *,
    via: str,
    correlation_id: str | None,
    proposal_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """提交: store a new proposal and announce it. Raises RuleViolation for a request to fix."""
    now = now or system_clock()
    values = _content_values(content, policy, actor)
    proposal_id = proposal_id or str(uuid.uuid4())
    if await store.get_proposal(conn, proposal_id) is not None:
        raise RuleViolation("proposal_id_unique", f"a proposal with id {proposal_id!r} already exists")
    await store.insert_proposal(
        conn,
        {
            "id": proposal_id,
            **values,
            **_REVIEW_FIELDS,
            "status": ProposalStatus.DRAFT.value,
            "submitted_by": actor.model_dump(mode="json"),
            "submitted_via": via,
            "submitted_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    return await _enter_system(
        conn, proposal_id, content, actor, policy, via=via, correlation_id=correlation_id, now=now
    )


async def _enter_system(
    conn: AsyncConnection,
    proposal_id: str,
    content: ProposalContent,
    actor: Actor,
    policy: Policy,
    *,
    via: str,
    correlation_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The moment a proposal leaves its draft: `submitted`; a proposal without cosigners is in review
    from then on, a joint one first asks its cosigners to confirm."""
    values = _content_values(content, policy, actor)
    joint = bool(content.cosigners)
    cosign_due = deadline_for(policy, "cosign_window", now) if joint else None
    await store.update_proposal(
        conn,
        proposal_id,
        **values,
        status=(ProposalStatus.AWAITING_COSIGNERS if joint else ProposalStatus.SUBMITTED).value,
        cosign_due=cosign_due,
        review_started_at=None if joint else now,
        submitted_by=actor.model_dump(mode="json"),
        submitted_via=via,
        submitted_at=now,
        updated_at=now,
    )
    await store.replace_signers(conn, proposal_id, content.first_proposer.id, [c.id for c in content.cosigners], now)
    events: list[Event] = [
        ProposalSubmitted(
            proposal_id=proposal_id,
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
    ]
    if cosign_due is not None:
        events.append(
            ProposalCosignRequested(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                cosigners=content.cosigners,
                due=cosign_due,
            )
        )
    await _emit(conn, events)
    return await view(conn, proposal_id)


async def create_draft(
    conn: AsyncConnection, changes: dict[str, Any], actor: Actor, *, now: datetime
) -> dict[str, Any]:
    """草稿: saved by its first proposer, who may edit it until submitting; nothing is published."""
    proposal_id = str(uuid.uuid4())
    first = changes.pop("first_proposer", None) or {"id": actor.id, "name": actor.id}
    if first["id"] != actor.id:
        raise RuleViolation("submitter_is_first_proposer", "a draft is yours: first_proposer.id must be your own id")
    row: dict[str, Any] = {
        "id": proposal_id,
        "title": "",
        "body": "",
        "category": "",
        "session_kind": "interim",
        "first_proposer_id": actor.id,
        "first_proposer": first,
        "cosigners": [],
        "suggestions": [],
        "series_id": None,
        **_REVIEW_FIELDS,
        "status": ProposalStatus.DRAFT.value,
        "submitted_by": actor.model_dump(mode="json"),
        "submitted_via": "http",
        "submitted_at": None,
        "created_at": now,
        "updated_at": now,
    }
    await store.insert_proposal(conn, row)
    await store.replace_signers(conn, proposal_id, actor.id, [], None)
    await store.update_proposal(conn, proposal_id, **_draft_changes(changes))
    return await view(conn, proposal_id)


def _draft_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Stored as written: completeness is checked on submission, not while drafting."""
    stored = dict(changes)
    if "suggestions" in stored:
        stored["suggestions"] = [{"number": n, "text": t} for n, t in enumerate(stored["suggestions"], start=1)]
    return stored


async def edit(
    conn: AsyncConnection, proposal_id: str, changes: dict[str, Any], actor: Actor, *, now: datetime
) -> dict[str, Any]:
    """Edit a draft, or a proposal returned for revision (退回修改); signers are fixed once submitted."""
    row = await visible_to(conn, proposal_id, actor)
    domain.only_the_first_proposer(actor, row["first_proposer_id"])
    domain.edit_only_draft_or_returned(ProposalStatus(row["status"]))
    first = changes.get("first_proposer")
    if first is not None and first["id"] != row["first_proposer_id"]:
        raise RuleViolation("first_proposer_fixed", "the first proposer of a proposal cannot be changed")
    if row["status"] == ProposalStatus.RETURNED.value and "cosigners" in changes:
        raise RuleViolation(
            "signers_fixed_after_submission", "cosigners confirmed the proposal as submitted; they cannot be changed"
        )
    await store.update_proposal(conn, proposal_id, **_draft_changes(changes), updated_at=now)
    return await view(conn, proposal_id)


async def submit_existing(
    conn: AsyncConnection,
    proposal_id: str,
    actor: Actor,
    policy: Policy,
    *,
    correlation_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """提交 a draft, or resubmit a proposal returned for revision (back to review, cosigners kept)."""
    row = await visible_to(conn, proposal_id, actor)
    domain.only_the_first_proposer(actor, row["first_proposer_id"])
    status = ProposalStatus(row["status"])
    domain.submit_only_draft_or_returned(status)
    content = _content_of(row)
    if status == ProposalStatus.DRAFT:
        return await _enter_system(
            conn, proposal_id, content, actor, policy, via="http", correlation_id=correlation_id, now=now
        )
    values = _content_values(content, policy, actor)
    if not await store.transition(
        conn,
        proposal_id,
        ProposalStatus.RETURNED,
        ProposalStatus.SUBMITTED,
        **values,
        review_started_at=now,
        updated_at=now,
    ):
        raise StateConflict("submit_only_draft_or_returned", "the proposal changed meanwhile; reload it")
    confirmed, unconfirmed = _signed_cosigners(row, await store.get_signers(conn, proposal_id))
    await _emit(
        conn,
        [
            ProposalResubmitted(
                proposal_id=proposal_id,
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
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                trigger="resubmitted",
                confirmed_cosigners=confirmed,
                unconfirmed_cosigners=unconfirmed,
            ),
        ],
    )
    return await view(conn, proposal_id)


async def cosign(
    conn: AsyncConnection, proposal_id: str, actor: Actor, policy: Policy, *, correlation_id: str | None, now: datetime
) -> dict[str, Any]:
    """联名确认: a named cosigner confirms; when the last one does, the proposal goes to review."""
    row = await visible_to(conn, proposal_id, actor)
    domain.cosign_only_while_awaiting(ProposalStatus(row["status"]))
    signers = await store.get_signers(conn, proposal_id)
    cosigner_ids = [c["id"] for c in row["cosigners"]]
    confirmed_ids = [s["signer_id"] for s in signers if not s["is_first"] and s["confirmed_at"] is not None]
    domain.cosigner_must_be_named(actor.id, cosigner_ids, confirmed_ids)
    today = local_date(now, policy.timezone)
    if not domain.cosign_window_open(today, row["cosign_due"]):
        raise StateConflict(
            "cosign_window_open", f"the cosign window (联名确认期) closed after {row['cosign_due'].isoformat()}"
        )
    await store.confirm_signer(conn, proposal_id, actor.id, now)
    cosigner = next(Proposer.model_validate(c) for c in row["cosigners"] if c["id"] == actor.id)
    await _emit(
        conn,
        [
            ProposalCosigned(
                proposal_id=proposal_id, actor=actor, correlation_id=correlation_id, cosigner=cosigner, cosigned_at=now
            )
        ],
    )
    if domain.ready_for_review(cosigner_ids, [*confirmed_ids, actor.id], today, row["cosign_due"]):
        await _start_review(conn, proposal_id, "all_cosigned", actor, correlation_id, now)
    return await view(conn, proposal_id)


async def _start_review(
    conn: AsyncConnection,
    proposal_id: str,
    trigger: Literal["all_cosigned", "cosign_window_closed"],
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> bool:
    """Awaiting cosigners → in review. The conditional update makes a concurrent sweep a no-op."""
    if not await store.transition(
        conn,
        proposal_id,
        ProposalStatus.AWAITING_COSIGNERS,
        ProposalStatus.SUBMITTED,
        review_started_at=now,
        updated_at=now,
    ):
        return False
    row = await store.get_proposal(conn, proposal_id)
    assert row is not None
    confirmed, unconfirmed = _signed_cosigners(row, await store.get_signers(conn, proposal_id))
    await _emit(
        conn,
        [
            ProposalReviewStarted(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                trigger=trigger,
                confirmed_cosigners=confirmed,
                unconfirmed_cosigners=unconfirmed,
            )
        ],
    )
    return True


async def close_cosign_windows(conn: AsyncConnection, policy: Policy, *, now: datetime) -> list[str]:
    """The periodic sweep: joint proposals whose 联名确认期 has closed go to review with whoever
    confirmed. Returns the ids moved."""
    today = local_date(now, policy.timezone)
    moved = []
    for row in await store.awaiting_cosigners(conn, due_before=today):
        if await _start_review(conn, row["id"], "cosign_window_closed", SWEEPER, None, now):
            moved.append(row["id"])
    return moved


async def withdraw(
    conn: AsyncConnection, proposal_id: str, actor: Actor, *, reason: str, correlation_id: str | None, now: datetime
) -> dict[str, Any]:
    """撤案 by the first proposer before the committee decides. A draft is withdrawn silently:
    nobody outside intake ever heard of it."""
    row = await visible_to(conn, proposal_id, actor)
    domain.only_the_first_proposer(actor, row["first_proposer_id"])
    status = ProposalStatus(row["status"])
    domain.withdraw_only_before_filing(status)
    if not await store.transition(
        conn, proposal_id, status, ProposalStatus.WITHDRAWN, withdraw_reason=reason, updated_at=now
    ):
        raise StateConflict("withdraw_only_before_filing", "the proposal changed meanwhile; reload it")
    if status != ProposalStatus.DRAFT:
        await _emit(
            conn,
            [ProposalWithdrawn(proposal_id=proposal_id, actor=actor, correlation_id=correlation_id, reason=reason)],
        )
    return await view(conn, proposal_id)


async def review(
    conn: AsyncConnection,
    proposal_id: str,
    *,
    decision: ReviewKind,
    reason: str | None,
    actor: Actor,
    policy: Policy,
    correlation_id: str | None,
    now: datetime | None = None,
    ground: str | None = None,
    converted_to_opinion: bool = False,
    into_proposal_id: str | None = None,
) -> dict[str, Any]:
    """审查立案: file with a number (立案), refuse on a ground (不予立案, optionally 转意见建议),
    merge into another proposal (并案), or return for revision (退回修改)."""
    now = now or system_clock()
    row = await store.get_proposal(conn, proposal_id)
    if row is None or row["status"] == ProposalStatus.DRAFT.value:
        raise NotFound(proposal_id)
    domain.review_may_decide(ProposalStatus(row["status"]))
    common = {"proposal_id": proposal_id, "actor": actor, "correlation_id": correlation_id}
    confirmed, _unconfirmed = _signed_cosigners(row, await store.get_signers(conn, proposal_id))
    changes: dict[str, Any] = {"reviewed_at": now, "review_reason": reason, "updated_at": now}
    event: Event
    if decision == "file":
        number = domain.filing_number(now.year, await store.next_filing_sequence(conn, now.year))
        changes |= {"filing_number": number}
        target = ProposalStatus.FILED
        event = ProposalFiled(
            **common,
            filing_number=number,
            title=row["title"],
            category=row["category"],
            first_proposer=Proposer.model_validate(row["first_proposer"]),
            cosigners=confirmed,
            suggestion_count=len(row["suggestions"]),
            filed_at=now,
            merged_proposal_ids=await store.merged_into(conn, proposal_id),
        )
    elif decision == "not_file":
        chosen = domain.not_filed_needs_reason_and_ground(reason, ground, policy.not_filed_grounds)
        changes |= {"not_filed_ground": chosen, "converted_to_opinion": converted_to_opinion}
        target = ProposalStatus.NOT_FILED
        event = ProposalNotFiled(
            **common, reason=reason or "", ground=chosen, converted_to_opinion=converted_to_opinion
        )
    elif decision == "merge":
        if not into_proposal_id:
            raise RuleViolation("merge_needs_target", "name the proposal to merge into (into_proposal_id)")
        into = await store.get_proposal(conn, into_proposal_id)
        into_status = None if into is None or into["status"] == "draft" else ProposalStatus(into["status"])
        domain.merge_target_must_be_open(proposal_id, into_proposal_id, into_status)
        assert into is not None
        changes |= {"merged_into": into_proposal_id}
        target = ProposalStatus.MERGED
        event = ProposalMerged(
            **common,
            into_proposal_id=into_proposal_id,
            reason=reason or "",
            into_filing_number=into["filing_number"],
            first_proposer=Proposer.model_validate(row["first_proposer"]),
            cosigners=confirmed,
        )
    else:
        note = domain.return_needs_reason(reason)
        changes |= {"return_reason": note, "reviewed_at": None}
        target = ProposalStatus.RETURNED
        event = ProposalReturned(**common, reason=note)
    if not await store.transition(conn, proposal_id, ProposalStatus.SUBMITTED, target, **changes):
        raise StateConflict("review_only_submitted", "the proposal changed meanwhile; reload it")
    await _emit(conn, [event])
    return await view(conn, proposal_id)


async def similar(conn: AsyncConnection, proposal_id: str, policy: Policy, *, limit: int) -> list[dict[str, Any]]:
    """相似提案: the filed proposals of the same year most similar to this one, best first."""
    row = await store.get_proposal(conn, proposal_id)
    if row is None or row["status"] == ProposalStatus.DRAFT.value:
        raise NotFound(proposal_id)
    year = local_date(row["submitted_at"] or row["created_at"], policy.timezone).year
    filed = {candidate["id"]: candidate for candidate in await store.filed_in_year(conn, year)}
    matches = similarity.rank_similar(_document(row), [_document(c) for c in filed.values()], limit=limit)
    return [
        {
            "id": match.id,
            "filing_number": filed[match.id]["filing_number"],
            "title": filed[match.id]["title"],
            "category": filed[match.id]["category"],
            "score": match.score,
        }
        for match in matches
    ]


def _document(row: dict[str, Any]) -> similarity.Document:
    suggestions = "\n".join(s["text"] for s in row["suggestions"])
    return similarity.Document(id=row["id"], title=row["title"], text=f"{row['body']}\n{suggestions}")
