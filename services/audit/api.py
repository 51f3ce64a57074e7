"""Audit's HTTP routes: the history of a proposal, for the committee and admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.audit import store
from shared.auth import Caller, require_role
from shared.events import Role
from shared.runtime import ServiceRuntime


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "source": row["source"],
        "type": row["type"],
        "time": row["time"].isoformat(),
        "actor": {"id": row["actor_id"], "role": row["actor_role"], "unit": row["actor_unit"]},
        "correlation_id": row["correlation_id"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "payload": row["payload"],
    }


def router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/audit", tags=["audit"])

    @routes.get("/proposals/{proposal_id}", summary="The ordered history of one proposal")
    async def proposal_history(proposal_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, Role.COMMITTEE, Role.ADMIN)
        async with runtime.engine.connect() as conn:
            rows = await store.history(conn, proposal_id)
        return {"proposal_id": proposal_id, "entries": [_view(row) for row in rows]}

    return routes
