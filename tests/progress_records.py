"""Typed records of a progress dossier for the rule tests: a proposal being handled, and replies,
measures, evaluations and co-opinions with what a rule reads filled in and the rest defaulted."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.progress.domain import (
    CoOpinion,
    Evaluation,
    MeasureStatus,
    Proposal,
    Reply,
    ReplyStatus,
    Stage,
    TrackedMeasure,
)

AT = datetime(2026, 5, 1, 2, tzinfo=UTC)


def proposal(**overrides: Any) -> Proposal:
    """Proposal p-1 of m-1 and m-2, handled by u1 with u2 co-handling (主办+会办), in its first round;
    sequences may be given as lists."""
    fields: dict[str, Any] = {
        "id": "p-1",
        "title": "t",
        "category": "经济建设",
        "stage": Stage.HANDLING,
        "filing_number": "2026-0001",
        "signers": ("m-1", "m-2"),
        "lead_unit": "u1",
        "co_units": ("u2",),
        "form": "lead_co",
        "reply_due": date(2026, 6, 1),
        "co_opinion_due": date(2026, 4, 1),
        "evaluation_due": None,
        "round": 1,
        "is_key": False,
        "leaders": (),
        "submitted_at": datetime(2026, 1, 20, 2, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 20, 2, tzinfo=UTC),
        "closed_at": None,
        "implemented_at": None,
        "suggestion_count": 2,
    }
    fields.update(overrides)
    for name in ("signers", "co_units", "leaders"):
        fields[name] = tuple(fields[name])
    fields["stage"] = Stage(fields["stage"])
    return Proposal(**fields)


def reply(unit: str = "u1", status: str = "approved", **overrides: Any) -> Reply:
    """Unit `unit`'s first-round reply to p-1, drafted on 2026-05-01."""
    fields: dict[str, Any] = {
        "id": f"r-{unit}",
        "proposal_id": "p-1",
        "unit": unit,
        "round": 1,
        "classification": "A",
        "text": "答复",
        "adoptions": (),
        "status": ReplyStatus(status),
        "reply_due": date(2026, 6, 1),
        "drafted_at": AT,
    }
    fields.update(overrides)
    fields["adoptions"] = tuple(fields["adoptions"])
    return Reply(**fields)


def measure(status: str = "planned", **overrides: Any) -> TrackedMeasure:
    """A measure of u1's reply to p-1, due at the end of 2026."""
    fields: dict[str, Any] = {
        "id": "m-1",
        "proposal_id": "p-1",
        "reply_id": "r-u1",
        "text": "举措",
        "owner_unit": "u1",
        "due": date(2026, 12, 31),
        "status": MeasureStatus(status),
        "note": "",
        "updated_at": AT,
    }
    fields.update(overrides)
    return TrackedMeasure(**fields)


def evaluation(result_grade: str = "satisfied", **overrides: Any) -> Evaluation:
    """m-1's first-round 评价 of p-1."""
    fields: dict[str, Any] = {
        "proposal_id": "p-1",
        "round": 1,
        "signer_id": "m-1",
        "handling_grade": "satisfied",
        "result_grade": result_grade,
        "comment": "",
        "submitted_at": AT,
    }
    fields.update(overrides)
    return Evaluation(**fields)


def co_opinion(unit: str = "u2") -> CoOpinion:
    return CoOpinion("p-1", unit, "会办意见", AT)
