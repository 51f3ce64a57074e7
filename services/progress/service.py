"""Progress's use cases: fold every event of a proposal into its read model and timeline, and the
handling steps progress owns (办理进展, 会办意见, 答复, 办复审查, 评价, 重新办理, 办结, 举措, 督办).

Each step reads as: load → decide (domain) → save state and events in the caller's transaction. The
events progress publishes are applied to its own read model as they are staged, since progress is
the single writer of `proposalflow.handling`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import domain, store
from services.progress.domain import Dossier, MeasureStatus, ReplyStatus, Stage
from shared import db
from shared.envelope import Envelope
from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import (
    Actor,
    AssignmentReassigned,
    CoOpinionSubmitted,
    EvaluationSubmitted,
    Event,
    KeyProposalDesignated,
    Measure,
    MeasureUpdated,
    ProgressContent,
    ProgressReported,
    ProposalAssigned,
    ProposalClosed,
    ProposalFiled,
    ProposalImplemented,
    ProposalSubmitted,
    RehandlingStarted,
    ReplyApproved,
    ReplyContent,
    ReplyDrafted,
    ReplyReturned,
    SubmissionRejected,
    SupervisionRecorded,
)
from shared.messaging import NotReady, add_to_outbox
from shared.policy import Policy, WorkingCalendar, deadline_for, local_date

SERVICE = "progress"


async def record(conn: AsyncConnection, envelope: Envelope, event: Event) -> None:
    """Apply one consumed event: the first one of a proposal must be `submitted`; others wait for it."""
    current = await store.get_proposal(conn, event.proposal_id)
    now = envelope.time
    if current is None:
        if isinstance(event, SubmissionRejected):
            # The answer to a command that made no proposal: nothing to track. Parked, it would wait
            # forever, and hold up every event of a proposal later submitted under that id.
            return
        if not isinstance(event, ProposalSubmitted):
            raise NotReady(f"proposal {event.proposal_id} not known yet (waiting for its submitted event)")
        await db.insert_rows(
            conn,
            store.proposals,
            {
                "id": event.proposal_id,
                "title": event.title,
                "category": event.category,
                "stage": Stage.SUBMITTED.value,
                "filing_number": None,
                "signers": [event.first_proposer.id, *(c.id for c in event.cosigners)],
                "lead_unit": None,
                "co_units": [],
                "reply_due": None,
                "submitted_at": event.submitted_at,
                "updated_at": now,
                "suggestion_count": len(event.suggestions),
                "is_key": False,
                "leaders": [],
                "round": 1,
            },
        )
    else:
        changes: dict[str, Any] = {}
        filing_number = getattr(event, "filing_number", None)
        if filing_number:
            changes["filing_number"] = filing_number
        if isinstance(event, ProposalFiled):
            changes["suggestion_count"] = event.suggestion_count
        if isinstance(event, ProposalAssigned | AssignmentReassigned):
            changes.update(domain.handling_units(event))
        if isinstance(event, KeyProposalDesignated):
            leaders = [event.supervising_leader, *([event.leading_leader] if event.leading_leader else [])]
            changes.update(is_key=True, leaders=leaders)
        await _apply(conn, current, event, changes, domain.next_stage(Stage(current["stage"]), event), now)
    await _add_to_timeline(conn, envelope, event)


async def _apply(
    conn: AsyncConnection,
    current: dict[str, Any],
    event: Event,
    changes: dict[str, Any],
    stage: Stage | None,
    now: datetime,
) -> None:
    values = {"updated_at": now, **changes}
    if stage is not None:
        values["stage"] = stage.value
    await db.update_by(conn, store.proposals, current["id"], values)


async def _add_to_timeline(conn: AsyncConnection, envelope: Envelope, event: Event) -> None:
    await db.insert_rows(
        conn,
        store.timeline,
        {
            "proposal_id": event.proposal_id,
            "event_id": envelope.id,
            "type": envelope.type,
            "at": envelope.time,
            "actor": event.actor.model_dump(mode="json"),
            "summary": domain.summary(event),
            "data": domain.timeline_data(event),
        },
    )


async def _publish(
    conn: AsyncConnection,
    dossier: Dossier,
    event: Event,
    now: datetime,
    *,
    stage: Stage | None = None,
    changes: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> None:
    """Stage one event of ours in the outbox and apply it to the read model, in one transaction."""
    [envelope] = await add_to_outbox(conn, store.metadata, SERVICE, [(event, event_id) if event_id else event])
    await _apply(conn, dossier.proposal, event, changes or {}, stage, now)
    await _add_to_timeline(conn, envelope, event)


async def _dossier(conn: AsyncConnection, proposal_id: str) -> Dossier:
    dossier = await store.load_dossier(conn, proposal_id)
    if dossier is None:
        raise NotFound(proposal_id)
    return dossier


def _flow(actor: Actor, correlation_id: str | None) -> dict[str, Any]:
    return {"actor": actor, "correlation_id": correlation_id}


async def report_progress(
    conn: AsyncConnection,
    proposal_id: str,
    unit: str | None,
    content: ProgressContent,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """办理进展: a handling unit records contact with the proposer, a meeting, research…"""
    dossier = await _dossier(conn, proposal_id)
    unit = domain.unit_must_handle(dossier.proposal, unit)
    domain.progress_while_handling(dossier.stage)
    event = ProgressReported(
        proposal_id=proposal_id,
        unit=unit,
        kind=content.kind.value,
        on=content.on,
        text=content.text,
        **_flow(actor, correlation_id),
    )
    stage = Stage.HANDLING if dossier.stage == Stage.ASSIGNED else None
    await _publish(conn, dossier, event, now, stage=stage)


async def submit_co_opinion(
    conn: AsyncConnection,
    proposal_id: str,
    unit: str | None,
    text: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """会办意见: a co-handling unit's opinion to the lead unit (late ones are kept, and stay overdue-marked)."""
    dossier = await _dossier(conn, proposal_id)
    unit = domain.unit_must_handle(dossier.proposal, unit)
    domain.co_opinion_allowed(dossier, unit)
    await conn.execute(
        insert(store.co_opinions).values(proposal_id=proposal_id, unit=unit, text=text, submitted_at=now)
    )
    event = CoOpinionSubmitted(
        proposal_id=proposal_id,
        unit=unit,
        text=text,
        co_opinion_due=dossier.proposal["co_opinion_due"],
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now)


async def draft_reply(
    conn: AsyncConnection,
    proposal_id: str,
    unit: str | None,
    content: ReplyContent,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
) -> str:
    """答复: the lead unit (each unit, for 分办) drafts its reply for 办复审查. Returns the reply id."""
    dossier = await _dossier(conn, proposal_id)
    unit = domain.unit_must_handle(dossier.proposal, unit)
    domain.reply_allowed(dossier, unit)
    today = local_date(now, policy.timezone)
    domain.reply_content_valid(
        content.classification,
        [adoption.number for adoption in content.adoptions],
        dossier.proposal["suggestion_count"],
        policy,
    )
    domain.measures_due_in_future([plan.due for plan in content.measures], today)
    reply_id = str(uuid.uuid4())
    measures = [
        Measure(id=f"{reply_id}-m{n}", text=plan.text, owner_unit=plan.owner_unit, due=plan.due)
        for n, plan in enumerate(content.measures, start=1)
    ]
    row = {
        "id": reply_id,
        "proposal_id": proposal_id,
        "unit": unit,
        "round": dossier.round,
        "classification": content.classification,
        "text": content.text,
        "adoptions": [adoption.model_dump(mode="json") for adoption in content.adoptions],
        "status": ReplyStatus.DRAFTED.value,
        "reply_due": dossier.proposal["reply_due"],
        "drafted_at": now,
        "reviewed_at": None,
        "review_reason": None,
        "public": False,
    }
    await conn.execute(insert(store.replies).values(**row))
    if measures:
        await conn.execute(
            insert(store.measures),
            [
                {
                    "id": measure.id,
                    "proposal_id": proposal_id,
                    "reply_id": reply_id,
                    "text": measure.text,
                    "owner_unit": measure.owner_unit,
                    "due": measure.due,
                    "status": MeasureStatus.PLANNED.value,
                    "note": "",
                    "updated_at": now,
                }
                for measure in measures
            ],
        )
    replies = [*dossier.replies_of_round(), row]
    event = ReplyDrafted(
        proposal_id=proposal_id,
        reply_id=reply_id,
        unit=unit,
        classification=content.classification,
        text=content.text,
        adoptions=content.adoptions,
        measures=measures,
        round=dossier.round,
        reply_due=dossier.proposal["reply_due"],
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now, stage=domain.round_stage(domain.reply_units(dossier.proposal), replies))
    return reply_id


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def open_steps(dossier: Dossier, today: date) -> list[dict[str, Any]]:
    """The steps still owed on a proposal, each with its due date and whether it is overdue."""
    return [
        {
            "kind": item.kind,
            "unit": item.unit or None,
            "signer_id": item.signer_id,
            "measure_id": item.measure_id,
            "due": item.due.isoformat(),
            "overdue": today > item.due,
        }
        for item in domain.obligations(dossier)
    ]


def summary_view(dossier: Dossier, today: date) -> dict[str, Any]:
    """A proposal in a list: where it stands and whether anything is overdue."""
    proposal = dossier.proposal
    return {
        "id": dossier.id,
        "title": proposal["title"],
        "category": proposal["category"],
        "stage": proposal["stage"],
        "filing_number": proposal["filing_number"],
        "form": proposal["form"],
        "lead_unit": proposal["lead_unit"],
        "co_units": proposal["co_units"],
        "key": proposal["is_key"],
        "round": proposal["round"],
        "reply_due": _iso(proposal["reply_due"]),
        "evaluation_due": _iso(proposal["evaluation_due"]),
        "closed_at": _iso(proposal["closed_at"]),
        "implemented_at": _iso(proposal["implemented_at"]),
        "overdue": domain.is_overdue(dossier, today),
    }


def proposal_view(dossier: Dossier, entries: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """A proposal with its handling records and the full timeline (办理全过程)."""
    return {
        **summary_view(dossier, today),
        "suggestion_count": dossier.proposal["suggestion_count"],
        "co_opinion_due": _iso(dossier.proposal["co_opinion_due"]),
        "leaders": dossier.proposal["leaders"] or [],
        "open_steps": open_steps(dossier, today),
        "co_opinions": [
            {"unit": o["unit"], "text": o["text"], "submitted_at": _iso(o["submitted_at"])} for o in dossier.co_opinions
        ],
        "replies": [
            {
                "id": r["id"],
                "unit": r["unit"],
                "round": r["round"],
                "classification": r["classification"],
                "text": r["text"],
                "adoptions": r["adoptions"],
                "status": r["status"],
                "reply_due": _iso(r["reply_due"]),
                "drafted_at": _iso(r["drafted_at"]),
                "reviewed_at": _iso(r["reviewed_at"]),
                "review_reason": r["review_reason"],
                "public": r["public"],
            }
            for r in dossier.replies
        ],
        "evaluations": [
            {
                "signer_id": e["signer_id"],
                "round": e["round"],
                "handling_grade": e["handling_grade"],
                "result_grade": e["result_grade"],
                "comment": e["comment"],
                "submitted_at": _iso(e["submitted_at"]),
            }
            for e in dossier.evaluations
        ],
        "measures": [
            {
                "id": m["id"],
                "reply_id": m["reply_id"],
                "text": m["text"],
                "owner_unit": m["owner_unit"],
                "due": _iso(m["due"]),
                "status": m["status"],
                "note": m["note"],
            }
            for m in dossier.measures
        ],
        "timeline": [
            {
                "type": entry["type"],
                "at": entry["at"].isoformat(),
                "actor": entry["actor"],
                "summary": entry["summary"],
                "event_id": entry["event_id"],
            }
            for entry in entries
        ],
    }


def public_reply_view(dossier: Dossier, reply: dict[str, Any]) -> dict[str, Any]:
    """答复公开: a reply with personal data removed — no proposers, no contact details, no comments."""
    return {
        "proposal_id": dossier.id,
        "filing_number": dossier.proposal["filing_number"],
        "title": dossier.proposal["title"],
        "category": dossier.proposal["category"],
        "unit": reply["unit"],
        "lead_unit": dossier.proposal["lead_unit"],
        "co_units": dossier.proposal["co_units"],
        "classification": reply["classification"],
        "text": domain.redact_personal_data(reply["text"]),
        "approved_on": _iso(reply["reviewed_at"].date() if reply["reviewed_at"] else None),
    }


def _reply(dossier: Dossier, reply_id: str) -> dict[str, Any]:
    for reply in dossier.replies:
        if reply["id"] == reply_id:
            return reply
    raise NotFound(reply_id)


async def review_reply(
    conn: AsyncConnection,
    proposal_id: str,
    reply_id: str,
    *,
    approve: bool,
    reason: str | None,
    public: bool | None,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> None:
    """办复审查: the committee approves a reply (it goes to the proposers) or returns it with a reason."""
    dossier = await _dossier(conn, proposal_id)
    reply = _reply(dossier, reply_id)
    domain.review_pending(reply)
    if not approve and not (reason and reason.strip()):
        raise RuleViolation("return_needs_reason", "a returned reply needs the reason, so the unit can redraft it")
    status = ReplyStatus.APPROVED if approve else ReplyStatus.RETURNED
    disclosed = approve and (policy.publish_approved_replies if public is None else public)
    await conn.execute(
        update(store.replies)
        .where(store.replies.c.id == reply_id)
        .values(status=status.value, reviewed_at=now, review_reason=reason, public=disclosed)
    )
    reply = {**reply, "status": status.value}
    replies = [reply if other["id"] == reply_id else other for other in dossier.replies_of_round()]
    stage = domain.round_stage(domain.reply_units(dossier.proposal), replies)
    changes: dict[str, Any] = {}
    event: Event
    if approve:
        evaluation_due = None
        if stage == Stage.ANSWERED:
            evaluation_due = deadline_for(policy, "evaluation_window", now, calendar)
            changes = {"evaluation_due": evaluation_due, "answered_at": dossier.proposal["answered_at"] or now}
        event = ReplyApproved(
            proposal_id=proposal_id,
            reply_id=reply_id,
            unit=reply["unit"],
            approved_at=now,
            evaluation_due=evaluation_due,
            public=disclosed,
            **_flow(actor, correlation_id),
        )
    else:
        event = ReplyReturned(
            proposal_id=proposal_id,
            reply_id=reply_id,
            unit=reply["unit"],
            reason=reason or "",
            **_flow(actor, correlation_id),
        )
        # A returned reply's measures go with it; the redraft commits to its own.
        await conn.execute(store.measures.delete().where(store.measures.c.reply_id == reply_id))
    await _publish(conn, dossier, event, now, stage=stage, changes=changes)


async def evaluate(
    conn: AsyncConnection,
    proposal_id: str,
    signer: str,
    *,
    handling_grade: str,
    result_grade: str,
    comment: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
    policy: Policy,
    calendar: WorkingCalendar,
) -> None:
    """评价; then 重新办理 (unsatisfied first proposer) or 办结 (every signer has evaluated)."""
    dossier = await _dossier(conn, proposal_id)
    grades = [handling_grade, result_grade]
    domain.evaluation_allowed(dossier, signer, local_date(now, policy.timezone), grades, policy)
    await conn.execute(
        insert(store.evaluations).values(
            proposal_id=proposal_id,
            round=dossier.round,
            signer_id=signer,
            handling_grade=handling_grade,
            result_grade=result_grade,
            comment=comment,
            submitted_at=now,
        )
    )
    event = EvaluationSubmitted(
        proposal_id=proposal_id,
        signer_id=signer,
        handling_grade=handling_grade,
        result_grade=result_grade,
        comment=comment,
        round=dossier.round,
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now)
    if domain.rehandling_triggered(dossier, signer, grades, policy):
        reply_due = deadline_for(policy, "rehandling_deadline", now, calendar)
        rehandling = RehandlingStarted(
            proposal_id=proposal_id,
            reply_due=reply_due,
            round=dossier.round + 1,
            reason=comment,
            **_flow(actor, correlation_id),
        )
        await _publish(
            conn,
            dossier,
            rehandling,
            now,
            stage=Stage.HANDLING,
            changes={"round": dossier.round + 1, "reply_due": reply_due, "evaluation_due": None},
        )
    elif domain.all_evaluated(dossier, extra_signer=signer):
        await close(conn, dossier, "all_evaluated", actor, correlation_id, now)


async def close(
    conn: AsyncConnection,
    dossier: Dossier,
    reason: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """办结 (its id is deterministic per round, so two replicas closing it make one event)."""
    event = ProposalClosed(
        proposal_id=dossier.id,
        closed_at=now,
        reason=reason,
        **_flow(actor, correlation_id),
    )
    await _publish(
        conn, dossier, event, now, stage=Stage.CLOSED, changes={"closed_at": now}, event_id=domain.closing_id(dossier)
    )
    dossier.proposal.update(stage=Stage.CLOSED.value, closed_at=now)
    await _maybe_implemented(conn, dossier, actor, correlation_id, now)


async def _maybe_implemented(
    conn: AsyncConnection, dossier: Dossier, actor: Actor, correlation_id: str | None, now: datetime
) -> None:
    if not domain.implemented(dossier):
        return
    statuses = [measure["status"] for measure in dossier.measures]
    event = ProposalImplemented(
        proposal_id=dossier.id,
        implemented_at=now,
        measures_done=statuses.count(MeasureStatus.DONE.value),
        measures_dropped=statuses.count(MeasureStatus.DROPPED.value),
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now, changes={"implemented_at": now})


async def update_measure(
    conn: AsyncConnection,
    proposal_id: str,
    measure_id: str,
    *,
    status: MeasureStatus,
    note: str,
    unit: str | None,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """举措落实: its owner unit (or the lead unit) moves a measure on; all settled after 办结 = 落实."""
    dossier = await _dossier(conn, proposal_id)
    measure = next((m for m in dossier.measures if m["id"] == measure_id), None)
    if measure is None:
        raise NotFound(measure_id)
    if unit not in (measure["owner_unit"], dossier.proposal["lead_unit"]):
        raise RuleViolation(
            "measure_by_owner",
            f"measure {measure_id} is owned by {measure['owner_unit']}; only it or the lead unit update it",
        )
    approved = any(r["id"] == measure["reply_id"] and r["status"] == ReplyStatus.APPROVED for r in dossier.replies)
    if not approved:
        raise StateConflict("measure_after_approval", "a measure is tracked once its reply is approved")
    domain.measure_transition(MeasureStatus(measure["status"]), status, note)
    await conn.execute(
        update(store.measures)
        .where(store.measures.c.id == measure_id)
        .values(status=status.value, note=note, updated_at=now)
    )
    measure.update(status=status.value, note=note)
    event = MeasureUpdated(
        proposal_id=proposal_id,
        measure_id=measure_id,
        status=status.value,
        note=note,
        owner_unit=measure["owner_unit"],
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now)
    await _maybe_implemented(conn, dossier, actor, correlation_id, now)


async def record_supervision(
    conn: AsyncConnection,
    proposal_id: str,
    *,
    kind: str,
    on: date,
    text: str,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> None:
    """督办: a leader's meeting, visit or instruction on a key proposal it supervises."""
    dossier = await _dossier(conn, proposal_id)
    domain.supervisor_must_lead(dossier.proposal, actor.id)
    event = SupervisionRecorded(
        proposal_id=proposal_id,
        leader_id=actor.id,
        kind=kind,
        on=on,
        text=text,
        **_flow(actor, correlation_id),
    )
    await _publish(conn, dossier, event, now)


async def tick(conn: AsyncConnection, now: datetime, policy: Policy, calendar: WorkingCalendar) -> int:
    """The scheduler's one pass: 到期预警 and 逾期 notices, and 办结 when a 评价期 has closed.

    Every event has a deterministic id; one already published is skipped, so replicas and reruns
    make one effect. Returns how many events were staged.
    """
    today = local_date(now, policy.timezone)
    dossiers = await store.load_dossiers(conn, await store.open_proposal_ids(conn))
    staged = 0
    for event, event_id in domain.due_notices(dossiers, today, policy, calendar):
        if await store.timeline_has(conn, event_id):
            continue
        dossier = next(d for d in dossiers if d.id == event.proposal_id)
        await _publish(conn, dossier, event, now, event_id=event_id)
        staged += 1
    for dossier in dossiers:
        if domain.evaluation_window_closed(dossier, today) and not await store.timeline_has(
            conn, domain.closing_id(dossier)
        ):
            await close(conn, dossier, "evaluation_window_closed", domain.SCHEDULER, None, now)
            staged += 1
    return staged
