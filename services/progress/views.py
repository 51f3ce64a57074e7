"""Progress's JSON views of a dossier: what the routes answer with (the read side; no rules here)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.progress import domain
from services.progress.domain import Dossier, Reply
from shared.policy import DEFAULT_TIMEZONE, WorkingCalendar


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def open_steps(
    dossier: Dossier, today: date, calendar: WorkingCalendar, timezone: str = DEFAULT_TIMEZONE
) -> list[dict[str, Any]]:
    """The steps still owed on a proposal, each with its due date, whether it is overdue, whether the
    due date may still move (`provisional_calendar`: its year's official holiday calendar is not known
    yet), and, for a measure, whether it is carried over from its proposal's year (跨年度落实)."""
    measures = {measure.id: measure for measure in dossier.measures}
    return [
        {
            "kind": item.kind,
            "unit": item.unit or None,
            "signer_id": item.signer_id,
            "measure_id": item.measure_id,
            "due": item.due.isoformat(),
            "overdue": today > item.due,
            "provisional_calendar": calendar.is_provisional(item.due, item.due),
            "carried_over": item.measure_id in measures
            and domain.carried_over(dossier, measures[item.measure_id], timezone),
        }
        for item in domain.obligations(dossier)
    ]


def summary_view(dossier: Dossier, today: date, calendar: WorkingCalendar) -> dict[str, Any]:
    """A proposal in a list: where it stands, whether anything is overdue, and whether a due date still
    owed may move (`provisional_calendar`)."""
    proposal = dossier.proposal
    return {
        "id": dossier.id,
        "title": proposal.title,
        "category": proposal.category,
        "stage": proposal.stage.value,
        "filing_number": proposal.filing_number,
        "form": proposal.form,
        "lead_unit": proposal.lead_unit,
        "co_units": list(proposal.co_units),
        "key": proposal.is_key,
        "round": proposal.round,
        "reply_due": _iso(proposal.reply_due),
        "evaluation_due": _iso(proposal.evaluation_due),
        "closed_at": _iso(proposal.closed_at),
        "implemented_at": _iso(proposal.implemented_at),
        "overdue": domain.is_overdue(dossier, today),
        "provisional_calendar": any(
            calendar.is_provisional(item.due, item.due) for item in domain.obligations(dossier)
        ),
    }


def proposal_view(
    dossier: Dossier,
    entries: list[dict[str, Any]],
    today: date,
    calendar: WorkingCalendar,
    timezone: str = DEFAULT_TIMEZONE,
) -> dict[str, Any]:
    """A proposal with its handling records and the full timeline (办理全过程)."""
    return {
        **summary_view(dossier, today, calendar),
        "suggestion_count": dossier.proposal.suggestion_count,
        "co_opinion_due": _iso(dossier.proposal.co_opinion_due),
        "leaders": list(dossier.proposal.leaders),
        "open_steps": open_steps(dossier, today, calendar, timezone),
        "co_opinions": [
            {"unit": o.unit, "text": o.text, "submitted_at": _iso(o.submitted_at)} for o in dossier.co_opinions
        ],
        "replies": [
            {
                "id": r.id,
                "unit": r.unit,
                "round": r.round,
                "classification": r.classification,
                "text": r.text,
                "adoptions": list(r.adoptions),
                "status": r.status.value,
                "reply_due": _iso(r.reply_due),
                "drafted_at": _iso(r.drafted_at),
                "reviewed_at": _iso(r.reviewed_at),
                "review_reason": r.review_reason,
                "public": r.public,
            }
            for r in dossier.replies
        ],
        "evaluations": [
            {
                "signer_id": e.signer_id,
                "round": e.round,
                "handling_grade": e.handling_grade,
                "result_grade": e.result_grade,
                "comment": e.comment,
                "submitted_at": _iso(e.submitted_at),
            }
            for e in dossier.evaluations
        ],
        "measures": [
            {
                "id": m.id,
                "reply_id": m.reply_id,
                "text": m.text,
                "owner_unit": m.owner_unit,
                "due": _iso(m.due),
                "status": m.status.value,
                "note": m.note,
                "done_at": _iso(m.done_at),
                "reopened": m.reopened,
                "promised_at": _iso(m.promised_at),
                "carried_over": domain.carried_over(dossier, m, timezone),
            }
            for m in dossier.measures
        ],
        "implementation_evaluation": implementation_view(dossier),
        "implementation_evaluations": [
            {
                "signer_id": e.signer_id,
                "round": e.round,
                "grade": e.grade,
                "comment": e.comment,
                "reopened_measures": list(e.reopened_measures),
                "new_measure_requested": e.new_measure_requested,
                "submitted_at": _iso(e.submitted_at),
            }
            for e in dossier.implementation_evaluations
        ],
        "timeline": [
            {
                "type": entry["type"],
                "at": entry["at"].isoformat(),
                "actor": entry["actor"],
                "summary": entry["summary"],
                "facts": domain.timeline_facts(entry["data"]),
                "event_id": entry["event_id"],
            }
            for entry in entries
        ],
    }


def public_reply_view(dossier: Dossier, reply: Reply) -> dict[str, Any]:
    """答复公开: a reply with personal data removed — no proposers, no contact details, no comments."""
    return {
        "proposal_id": dossier.id,
        "filing_number": dossier.proposal.filing_number,
        "title": dossier.proposal.title,
        "category": dossier.proposal.category,
        "unit": reply.unit,
        "lead_unit": dossier.proposal.lead_unit,
        "co_units": list(dossier.proposal.co_units),
        "classification": reply.classification,
        "text": domain.redact_personal_data(reply.text),
        "approved_on": _iso(reply.reviewed_at.date() if reply.reviewed_at else None),
    }


def implementation_view(dossier: Dossier) -> dict[str, Any]:
    """落实评价: where it stands (null before 落实: due, open, closed, reopened), its round and due date,
    and the new measure the lead unit owes, if one was asked for."""
    proposal = dossier.proposal
    state = proposal.implementation_evaluation
    return {
        "state": state.value if state is not None else None,
        "round": proposal.implementation_round,
        "due": _iso(proposal.implementation_evaluation_due),
        "new_measure_due": _iso(proposal.measure_request_due),
    }
