"""Notify's HTTP routes: the in-app inbox (站内消息) of the caller."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.notify import domain, store
from shared.auth import Caller, Principal
from shared.events import Role
from shared.http import Problem
from shared.runtime import ServiceRuntime


def recipient_of(principal: Principal) -> str:
    """A unit user reads its unit's inbox; everyone else their own."""
    if principal.role == Role.UNIT:
        if not principal.unit:
            raise Problem(403, "Forbidden", "Your token names no unit; ask an admin for a unit token.")
        return domain.unit_recipient(principal.unit)
    return principal.id


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "proposal_id": row["proposal_id"],
        "cause_event_type": row["cause_event_type"],
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
    }


def router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/inbox", tags=["inbox"])

    @routes.get("", summary="My notifications, newest first, with the unread count")
    async def list_inbox(
        principal: Caller,
        unread: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            rows, unread_count = await store.inbox(
                conn, recipient_of(principal), unread_only=unread, limit=limit, offset=offset
            )
        return {"items": [_view(row) for row in rows], "unread": unread_count, "limit": limit, "offset": offset}

    @routes.post("/{notification_id}/read", summary="Mark one notification read", status_code=204)
    async def mark_read(notification_id: str, principal: Caller) -> None:
        async with runtime.transaction() as conn:
            await store.mark_read(conn, recipient_of(principal), notification_id, datetime.now(UTC))

    return routes
