"""Progress's HTTP routes: where a proposal stands, with its timeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.progress import service, store
from shared.auth import Caller, Principal
from shared.events import Role
from shared.http import Problem
from shared.runtime import ServiceRuntime

SEES_ALL = (Role.COMMITTEE, Role.DISPATCHER, Role.ADMIN)


def may_see(principal: Principal, row: dict[str, Any]) -> bool:
    """Committee, dispatcher and admin see all; a member its own; a unit what it handles."""
    if principal.role in SEES_ALL:
        return True
    if principal.role == Role.MEMBER:
        return principal.id in row["signers"]
    if principal.role == Role.UNIT:
        return principal.unit is not None and principal.unit in [row["lead_unit"], *row["co_units"]]
    return False


def router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/proposals", tags=["progress"])

    @routes.get("/{proposal_id}", summary="Where a proposal stands, with its timeline (办理进度)")
    async def get_proposal(proposal_id: str, principal: Caller) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.get_proposal(conn, proposal_id)
            if row is None or not may_see(principal, row):
                raise Problem(404, "Not found", f"No proposal {proposal_id} that you may see.")
            entries = await store.get_timeline(conn, proposal_id)
        return service.proposal_view(row, entries)

    return routes
