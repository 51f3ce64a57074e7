"""Intake's JSON views of a proposal: what the routes answer with (the read side; no rules here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.intake import similarity
from services.intake.domain import ProposalStatus
from shared.events import Actor, Role


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def may_see(actor: Actor, row: dict[str, Any], signers: Sequence[dict[str, Any]]) -> bool:
    """A member sees their own proposals (a draft only as its first proposer), the committee every
    proposal that has left its draft (the same rule as `Proposal.visible_to`)."""
    if actor.role == Role.MEMBER:
        return actor.id in {s["signer_id"] for s in signers}
    return bool(row["status"] != ProposalStatus.DRAFT.value)


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


def similar_view(row: dict[str, Any], filed: Sequence[dict[str, Any]], *, limit: int) -> list[dict[str, Any]]:
    """相似提案: the filed proposals (of the same year) most similar to this one, best first."""
    by_id = {candidate["id"]: candidate for candidate in filed}
    matches = similarity.rank_similar(_document(row), [_document(c) for c in by_id.values()], limit=limit)
    return [
        {
            "id": match.id,
            "filing_number": by_id[match.id]["filing_number"],
            "title": by_id[match.id]["title"],
            "category": by_id[match.id]["category"],
            "score": match.score,
        }
        for match in matches
    ]


def _document(row: dict[str, Any]) -> similarity.Document:
    suggestions = "\n".join(s["text"] for s in row["suggestions"])
    return similarity.Document(id=row["id"], title=row["title"], text=f"{row['body']}\n{suggestions}")
