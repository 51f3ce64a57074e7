"""The response bodies of audit's HTTP API, as its OpenAPI document shows them (shared/responses.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditActor(BaseModel):
    """Who caused the event, as its data named them (null for a record without an actor)."""

    id: str | None
    role: str | None
    unit: str | None


class AuditEntry(BaseModel):
    """One record of the append-only, hash-chained log: the event as it was read, and where from."""

    id: int
    seq: int = Field(description="Position in the whole log's chain.")
    event_id: str = Field(description="The CloudEvents id.")
    source: str = Field(description="The CloudEvents source.")
    type: str = Field(description="The CloudEvents type.")
    subject: str | None = Field(description="The proposal id.")
    time: datetime = Field(description="The CloudEvents time.")
    actor: AuditActor
    correlation_id: str | None = Field(description="The command or HTTP request that caused the event.")
    topic: str
    partition: int
    offset: int
    payload: Any = Field(description="The event's data as it was read.")
    recorded_at: datetime
    prev_hash: str
    subject_seq: int | None = Field(description="Position in the proposal's own chain.")
    subject_prev_hash: str | None
    hash: str


class ProposalHistory(BaseModel):
    """Everything recorded about one proposal, in order."""

    proposal_id: str
    entries: list[AuditEntry]


class AuditPage(BaseModel):
    """One page of a search, oldest first."""

    items: list[AuditEntry]
    limit: int
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
