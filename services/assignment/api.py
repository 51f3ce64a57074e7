"""Assignment's HTTP routes: thin. Catalogs (units, leaders), routing rules, assignments and the
answers to them (交办, 签收, 异议, 改办, 维持), key proposals (重点提案)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import domain, service, store, views
from services.assignment.domain import Leader, RoutingRules, Unit, UnitKind
from services.assignment.service import Clock, Context
from services.assignment.unit_of_work import SqlUnitOfWork
from shared.auth import Principal, roles
from shared.commands import CommandRunner, RuleViolation
from shared.events import AssignmentForm, Role
from shared.http import MAX_OFFSET, Problem
from shared.runtime import ServiceRuntime

Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]

# Who may call what (tests/security/authz_matrix.yaml). A route takes its caller as one of these, so the
# role is checked before the request's parameters and body are validated (shared.auth.roles).
AdminCaller = Annotated[Principal, Depends(roles(Role.ADMIN))]
DispatcherCaller = Annotated[Principal, Depends(roles(Role.DISPATCHER))]
CommitteeCaller = Annotated[Principal, Depends(roles(Role.COMMITTEE))]
UnitCaller = Annotated[Principal, Depends(roles(Role.UNIT))]
UnitsReader = Annotated[Principal, Depends(roles(Role.DISPATCHER, Role.COMMITTEE, Role.ADMIN, Role.UNIT, Role.LEADER))]
LeadersReader = Annotated[Principal, Depends(roles(Role.DISPATCHER, Role.COMMITTEE, Role.ADMIN, Role.LEADER))]
RulesReader = Annotated[Principal, Depends(roles(Role.ADMIN, Role.DISPATCHER))]
AssignmentsReader = Annotated[Principal, Depends(roles(Role.DISPATCHER, Role.COMMITTEE, Role.UNIT, Role.ADMIN))]
KeyProposalsReader = Annotated[Principal, Depends(roles(Role.COMMITTEE, Role.DISPATCHER, Role.ADMIN, Role.LEADER))]


class Confirmation(BaseModel):
    """交办确认: confirm the suggestion as it is, or with other units and form."""

    model_config = ConfigDict(extra="forbid")

    lead_unit: str | None = Field(default=None, description="Leave empty to keep the suggested routing.")
    co_units: list[str] | None = Field(default=None, description="主办+会办: units that send 会办意见 to the lead.")
    split_units: list[str] | None = Field(default=None, description="分办: other units that each reply.")
    form: AssignmentForm | None = Field(
        default=None, description="单办/主办+会办/分办; follows from the units if left out."
    )


class Reassignment(BaseModel):
    """改办: the new units, and why."""

    model_config = ConfigDict(extra="forbid")

    lead_unit: str
    co_units: list[str] = Field(default_factory=list)
    split_units: list[str] = Field(default_factory=list)
    form: AssignmentForm | None = None
    reason: str = Field(default="", max_length=2000)


class Dispute(BaseModel):
    """异议: why the unit should not handle this proposal, and who should."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=5, max_length=2000)


class Upholding(BaseModel):
    """维持交办: the dispatcher's note to the disputing unit."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class UnitChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=2, max_length=200)
    short_name: str | None = Field(default=None, max_length=100)
    kind: UnitKind | None = None
    active: bool | None = None


class LeaderChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=2, max_length=200)
    active: bool | None = None


class KeyDesignation(BaseModel):
    """重点提案: proposals (or a whole series, 系列提案) with their supervising and leading leaders."""

    model_config = ConfigDict(extra="forbid")

    proposal_ids: list[str] = Field(default_factory=list, max_length=100)
    series_id: str | None = Field(default=None, max_length=100)
    supervising_leader: str = Field(description="督办领导 (leader id)")
    leading_leader: str | None = Field(default=None, description="领办领导 (leader id), optional")


def router(runtime: ServiceRuntime, ctx: Context, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["assignment"])

    commands = CommandRunner(runtime.transaction, store.metadata)

    # Units catalog (承办单位) ----------------------------------------------------------------------

    @routes.get("/units", summary="The units catalog (承办单位)", tags=["catalogs"])
    async def list_units(
        principal: UnitsReader, active: bool | None = None, limit: Limit = 100, offset: Offset = 0
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            catalog = await store.unit_catalog(conn)
        items = [unit for unit in catalog.values() if active is None or unit["active"] == active]
        return {"items": items[offset : offset + limit], "limit": limit, "offset": offset, "total": len(items)}

    @routes.post("/units", status_code=201, summary="Add a unit", tags=["catalogs"])
    async def create_unit(
        unit: Unit, request: Request, principal: AdminCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await commands.once(
            request,
            principal,
            idempotency_key,
            unit,
            lambda conn: service.create_unit(SqlUnitOfWork(conn), unit),
            missing="",
            status=201,
        )

    @routes.patch("/units/{unit_id}", summary="Change or deactivate a unit", tags=["catalogs"])
    async def update_unit(unit_id: str, changes: UnitChanges, principal: AdminCaller) -> Any:
        values = changes.model_dump(exclude_none=True)
        return await commands.run(
            lambda conn: service.update_unit(SqlUnitOfWork(conn), unit_id, values), missing=f"No unit {unit_id}."
        )

    @routes.delete("/units/{unit_id}", status_code=204, summary="Delete an unreferenced unit", tags=["catalogs"])
    async def delete_unit(unit_id: str, principal: AdminCaller) -> Response:
        await commands.run(
            lambda conn: service.delete_unit(SqlUnitOfWork(conn), unit_id), missing=f"No unit {unit_id}."
        )
        return Response(status_code=204)

    # Leaders catalog (市领导) ------------------------------------------------------------------------

    @routes.get("/leaders", summary="Leaders who supervise (督办) or lead (领办) key proposals", tags=["catalogs"])
    async def list_leaders(principal: LeadersReader, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            items = list((await store.leader_catalog(conn)).values())
        return {"items": items[offset : offset + limit], "limit": limit, "offset": offset, "total": len(items)}

    @routes.post("/leaders", status_code=201, summary="Add a leader", tags=["catalogs"])
    async def create_leader(
        leader: Leader, request: Request, principal: AdminCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await commands.once(
            request,
            principal,
            idempotency_key,
            leader,
            lambda conn: service.create_leader(SqlUnitOfWork(conn), leader),
            missing="",
            status=201,
        )

    @routes.patch("/leaders/{leader_id}", summary="Change or deactivate a leader", tags=["catalogs"])
    async def update_leader(leader_id: str, changes: LeaderChanges, principal: AdminCaller) -> Any:
        values = changes.model_dump(exclude_none=True)
        return await commands.run(
            lambda conn: service.update_leader(SqlUnitOfWork(conn), leader_id, values),
            missing=f"No leader {leader_id}.",
        )

    # Routing rules (交办规则) ------------------------------------------------------------------------

    @routes.get("/routing-rules", summary="The routing rules (交办规则)", tags=["catalogs"])
    async def get_rules(principal: RulesReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            return (await service.routing_rules(SqlUnitOfWork(conn))).model_dump()

    @routes.put("/routing-rules", summary="Replace the routing rules (validated)", tags=["catalogs"])
    async def put_rules(rules: RoutingRules, principal: AdminCaller) -> dict[str, Any]:

        async def save(conn: AsyncConnection) -> dict[str, Any]:
            await service.save_routing_rules(SqlUnitOfWork(conn), rules, ctx.policy, principal.as_actor())
            return rules.model_dump()

        return await commands.run(save, missing="No routing rules.")  # type: ignore[no-any-return]

    # Assignments (交办) ----------------------------------------------------------------------------

    @routes.get("/assignments", summary="Assignments in force; a unit sees its own")
    async def list_assignments(
        principal: AssignmentsReader, status: str | None = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict[str, Any]:
        unit = principal.unit or "" if principal.role == Role.UNIT else None
        async with runtime.engine.connect() as conn:
            rows = await store.list_assignments(conn, status=status, unit=unit, limit=limit, offset=offset)
        return {
            "items": [views.assignment_view(row, calendar=ctx.calendar) for row in rows],
            "limit": limit,
            "offset": offset,
        }

    @routes.get("/assignments/{proposal_id}", summary="The current assignment of a proposal")
    async def get_assignment(proposal_id: str, principal: AssignmentsReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.current_assignment(conn, proposal_id)
            visible = row is not None and (principal.role != Role.UNIT or principal.unit in domain.route_of(row).units)
            if row is None or not visible:
                raise Problem(404, "Not found", f"No assignment of proposal {proposal_id} that you may see.")
            return views.assignment_view(row, await store.responses_of(conn, row["id"]), calendar=ctx.calendar)

    missing = "No assignment of proposal {} yet; it is routed once filed."

    @routes.post("/assignments/{proposal_id}/confirm", summary="Confirm the routing (交办)")
    async def confirm(
        proposal_id: str,
        body: Confirmation,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            override = None
            if body.lead_unit is not None:
                override = domain.route_of_form(
                    body.form, body.lead_unit, body.co_units or [], body.split_units or [], ("交办机关调整",)
                )
            elif body.co_units is not None or body.split_units is not None or body.form is not None:
                raise RuleViolation("override_names_lead", "to change the routing, give lead_unit too")
            return await service.assign(
                SqlUnitOfWork(conn),
                proposal_id,
                override,
                principal.as_actor(),
                request.state.correlation_id,
                ctx,
                clock(),
            )

        return await commands.once(request, principal, idempotency_key, body, act, missing=missing.format(proposal_id))

    @routes.post("/assignments/{proposal_id}/accept", summary="Accept the assignment (签收), by a unit of it")
    async def accept(
        proposal_id: str, request: Request, principal: UnitCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            return await service.respond(
                SqlUnitOfWork(conn),
                proposal_id,
                principal.as_actor(),
                dispute_reason=None,
                correlation_id=request.state.correlation_id,
                ctx=ctx,
                now=clock(),
            )

        return await commands.once(request, principal, idempotency_key, None, act, missing=missing.format(proposal_id))

    @routes.post("/assignments/{proposal_id}/dispute", summary="Dispute the assignment (异议), within the window")
    async def dispute(
        proposal_id: str, body: Dispute, request: Request, principal: UnitCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            return await service.respond(
                SqlUnitOfWork(conn),
                proposal_id,
                principal.as_actor(),
                dispute_reason=body.reason,
                correlation_id=request.state.correlation_id,
                ctx=ctx,
                now=clock(),
            )

        return await commands.once(request, principal, idempotency_key, body, act, missing=missing.format(proposal_id))

    @routes.post("/assignments/{proposal_id}/reassign", summary="Reassign to other units (改办)")
    async def reassign(
        proposal_id: str,
        body: Reassignment,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            route = domain.route_of_form(body.form, body.lead_unit, body.co_units, body.split_units)
            return await service.reassign(
                SqlUnitOfWork(conn),
                proposal_id,
                route,
                body.reason,
                principal.as_actor(),
                request.state.correlation_id,
                ctx,
                clock(),
            )

        return await commands.once(request, principal, idempotency_key, body, act, missing=missing.format(proposal_id))

    @routes.post("/assignments/{proposal_id}/uphold", summary="Keep the assignment despite the dispute (维持)")
    async def uphold(
        proposal_id: str,
        body: Upholding,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            return await service.uphold(
                SqlUnitOfWork(conn),
                proposal_id,
                body.note,
                principal.as_actor(),
                request.state.correlation_id,
                ctx,
                clock(),
            )

        return await commands.once(request, principal, idempotency_key, body, act, missing=missing.format(proposal_id))

    # Key proposals (重点提案) ------------------------------------------------------------------------

    @routes.post(
        "/key-proposals", status_code=201, summary="Designate key proposals (重点提案)", tags=["key proposals"]
    )
    async def designate(
        body: KeyDesignation, request: Request, principal: CommitteeCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:

        async def act(conn: AsyncConnection) -> dict[str, Any]:
            items = await service.designate_key(
                SqlUnitOfWork(conn),
                proposal_ids=body.proposal_ids,
                series_id=body.series_id,
                supervising_leader=body.supervising_leader,
                leading_leader=body.leading_leader,
                actor=principal.as_actor(),
                correlation_id=request.state.correlation_id,
                now=clock(),
            )
            return {"items": items}

        return await commands.once(request, principal, idempotency_key, body, act, missing="", status=201)

    @routes.get(
        "/key-proposals", summary="Key proposals; a leader sees those it supervises or leads", tags=["key proposals"]
    )
    async def list_key(principal: KeyProposalsReader, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        leader = principal.id if principal.role == Role.LEADER else None
        async with runtime.engine.connect() as conn:
            rows = await store.key_designations(conn, leader=leader, limit=limit, offset=offset)
        return {"items": [views.key_view(row) for row in rows], "limit": limit, "offset": offset}

    return routes
