"""The response bodies of notify's HTTP API, as its OpenAPI document shows them (shared/responses.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class InboxNotification(BaseModel):
    """站内消息: one notification in the caller's in-app inbox."""

    id: str
    title: str
    body: str
    proposal_id: str
    cause_event_type: str = Field(description="The CloudEvents type of the event it tells about.")
    created_at: datetime
    read: bool


class InboxPage(BaseModel):
    """One page of the caller's inbox, newest first."""

    items: list[InboxNotification]
    unread: int = Field(description="Unread notifications in the whole inbox.")
    limit: int
    offset: int
