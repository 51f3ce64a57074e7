"""Intake's rows and its aggregate's typed state, both ways: a `proposals` row becomes a
`ProposalState` and a `signers` row a `Signer`, and what the unit of work saves is written back as the
table's row (the proposers and suggestions as JSON lists, the status as its value)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from services.intake.domain import Proposal, ProposalState, ProposalStatus, Signer
from shared.records import row_of

Row = dict[str, Any]


def proposal_state(row: Mapping[str, Any]) -> ProposalState:
    return ProposalState(
        id=row["id"],
        title=row["title"],
        body=row["body"],
        category=row["category"],
        session_kind=row["session_kind"],
        first_proposer_id=row["first_proposer_id"],
        first_proposer=row["first_proposer"],
        cosigners=tuple(row["cosigners"]),
        suggestions=tuple(row["suggestions"]),
        series_id=row["series_id"],
        status=ProposalStatus(row["status"]),
        submitted_by=row["submitted_by"],
        submitted_via=row["submitted_via"],
        submitted_at=row["submitted_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        filing_number=row["filing_number"],
        review_reason=row["review_reason"],
        reviewed_at=row["reviewed_at"],
        review_started_at=row["review_started_at"],
        cosign_due=row["cosign_due"],
        not_filed_ground=row["not_filed_ground"],
        converted_to_opinion=bool(row["converted_to_opinion"]),
        merged_into=row["merged_into"],
        return_reason=row["return_reason"],
        withdraw_reason=row["withdraw_reason"],
    )


def signer(row: Mapping[str, Any]) -> Signer:
    return Signer(row["proposal_id"], row["signer_id"], bool(row["is_first"]), row["confirmed_at"])


def proposal(row: Mapping[str, Any], signers: Iterable[Mapping[str, Any]]) -> Proposal:
    """The aggregate of a `proposals` row and its `signers` rows."""
    return Proposal(proposal_state(row), [signer(s) for s in signers])


def _as_stored(row: Row) -> Row:
    """A row as the database reads it back: timestamps in UTC (`UTCDateTime`)."""
    return {key: value.astimezone(UTC) if isinstance(value, datetime) else value for key, value in row.items()}


def rows(proposal: Proposal) -> tuple[Row, list[Row]]:
    """The `proposals` row and the `signers` rows of a proposal as saved, as a read of them would return
    them (what the door answers with after a write, without reading it back)."""
    return _as_stored(row_of(proposal.state)), [_as_stored(row_of(s)) for s in proposal.signers]
