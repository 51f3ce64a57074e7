"""Assignment's HTTP routes: the units catalog, an assignment, the dispatcher's confirmation (交办)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from services.assignment import service, store
from services.assignment.domain import Route
from shared.auth import Caller, require_role
from shared.events import Role
from shared.http import Problem, remember_idempotent, replay_idempotent, request_fingerprint
from shared.policy import Policy, WorkingCalendar
from shared.runtime import ServiceRuntime


class Confirmation(BaseModel):
    """交办确认: confirm the suggestion as it is, or with other units."""

    model_config = ConfigDict(extra="forbid")

    lead_unit: str | None = Field(default=None, description="Leave empty to keep the suggested lead unit.")
    co_units: list[str] | None = None


def router(runtime: ServiceRuntime, policy: Policy, calendar: WorkingCalendar) -> APIRouter:
    routes = APIRouter(tags=["assignment"])

    @routes.get("/units", summary="The units catalog (承办单位)")
    async def list_units(_principal: Caller) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            catalog = await store.unit_catalog(conn)
        return {"items": list(catalog.values())}

    @routes.get("/assignments/{proposal_id}", summary="The current assignment of a proposal")
    async def get_assignment(proposal_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, Role.DISPATCHER, Role.COMMITTEE, Role.UNIT, Role.ADMIN)
        async with runtime.engine.connect() as conn:
            row = await store.current_assignment(conn, proposal_id)
        visible = row is not None and (
            principal.role != Role.UNIT or principal.unit in [row["lead_unit"], *row["co_units"]]
        )
        if row is None or not visible:
            raise Problem(404, "Not found", f"No assignment of proposal {proposal_id} that you may see.")
        return service.assignment_view(row)

    @routes.post("/assignments/{proposal_id}/confirm", summary="Confirm the routing (交办)")
    async def confirm(
        proposal_id: str,
        body: Confirmation,
        request: Request,
        principal: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        require_role(principal, Role.DISPATCHER)
        fingerprint = request_fingerprint(["confirm", proposal_id, body.model_dump()])
        async with runtime.transaction() as conn:
            replay = await replay_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            override = None
            if body.lead_unit is not None:
                override = Route(body.lead_unit, tuple(body.co_units or ()), ("交办机关调整",))
            try:
                view = await service.assign(
                    conn, proposal_id, override, principal.as_actor(), request.state.correlation_id, policy, calendar
                )
            except service.NotFound as exc:
                raise Problem(404, "Not found", f"No routing suggestion for proposal {proposal_id} yet.") from exc
            except service.Conflict as exc:
                raise Problem(409, "Conflict", str(exc)) from exc
            await remember_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint, 200, view)
        return view

    return routes
