"""Assignment's HTTP routes: thin. Catalogs (units, leaders), routing rules, assignments and the
answers to them (交办, 签收, 异议, 改办, 维持), key proposals (重点提案)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import domain, mapping, service, store, views
from services.assignment.domain import Leader, RoutingRules, Unit, UnitKind
from services.assignment.service import Clock, Context
from services.assignment.unit_of_work import SqlUnitOfWork, UnitOfWork
from shared.auth import Principal, roles
from shared.commands import CommandRunner, RuleViolation
from shared.events import Actor, AssignmentForm, Role
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

    async def write(
        request: Request,
        principal: Principal,
        key: str | None,
        body: BaseModel | None,
        use_case: Callable[[UnitOfWork], Awaitable[Any]],
        *,
        missing: str,
        status: int = 200,
    ) -> Any:
        """A POST: the use case on the door's transaction, once per Idempotency-Key `key`."""

        def action(conn: AsyncConnection) -> Awaitable[Any]:
            return use_case(SqlUnitOfWork(conn))

        return await commands.once(request, principal, key, body, action, missing=missing, status=status)

    async def added(
        request: Request,
        principal: Principal,
        key: str | None,
        entry: BaseModel,
        create: Callable[[UnitOfWork], Awaitable[Any]],
    ) -> Any:
        """A catalog's new entry (201), once per Idempotency-Key `key`."""
        return await write(request, principal, key, entry, create, missing="", status=201)

    async def change(use_case: Callable[[UnitOfWork], Awaitable[Any]], *, missing: str) -> Any:
        """A PATCH, PUT or DELETE: the use case on the door's transaction (repeating it is harmless)."""
        return await commands.run(lambda conn: use_case(SqlUnitOfWork(conn)), missing=missing)

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
        return await added(request, principal, idempotency_key, unit, lambda uow: service.create_unit(uow, unit))

    @routes.patch("/units/{unit_id}", summary="Change or deactivate a unit", tags=["catalogs"])
    async def update_unit(unit_id: str, changes: UnitChanges, principal: AdminCaller) -> Any:
        values = changes.model_dump(exclude_none=True)
        return await change(lambda uow: service.update_unit(uow, unit_id, values), missing=f"No unit {unit_id}.")

    @routes.delete("/units/{unit_id}", status_code=204, summary="Delete an unreferenced unit", tags=["catalogs"])
    async def delete_unit(unit_id: str, principal: AdminCaller) -> Response:
        await change(lambda uow: service.delete_unit(uow, unit_id), missing=f"No unit {unit_id}.")
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
        return await added(request, principal, idempotency_key, leader, lambda uow: service.create_leader(uow, leader))

    @routes.patch("/leaders/{leader_id}", summary="Change or deactivate a leader", tags=["catalogs"])
    async def update_leader(leader_id: str, changes: LeaderChanges, principal: AdminCaller) -> Any:
        values = changes.model_dump(exclude_none=True)
        return await change(
            lambda uow: service.update_leader(uow, leader_id, values), missing=f"No leader {leader_id}."
        )

    # Routing rules (交办规则) ------------------------------------------------------------------------

    @routes.get("/routing-rules", summary="The routing rules (交办规则)", tags=["catalogs"])
    async def get_rules(principal: RulesReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            return (await service.routing_rules(SqlUnitOfWork(conn))).model_dump()

    @routes.put("/routing-rules", summary="Replace the routing rules (validated)", tags=["catalogs"])
    async def put_rules(rules: RoutingRules, principal: AdminCaller) -> dict[str, Any]:

        async def save(uow: UnitOfWork) -> dict[str, Any]:
            await service.save_routing_rules(uow, rules, ctx.policy, principal.as_actor())
            return rules.model_dump()

        return await change(save, missing="No routing rules.")  # type: ignore[no-any-return]

    # Assignments (交办) ----------------------------------------------------------------------------

    @routes.get("/assignments", summary="Assignments in force; a unit sees its own")
    async def list_assignments(
        principal: AssignmentsReader, status: str | None = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict[str, Any]:
        unit = principal.unit or "" if principal.role == Role.UNIT else None
        async with runtime.engine.connect() as conn:
            rows = await store.list_assignments(conn, status=status, unit=unit, limit=limit, offset=offset)
        return {
            "items": [views.assignment_view(mapping.assignment_state(row), calendar=ctx.calendar) for row in rows],
            "limit": limit,
            "offset": offset,
        }

    @routes.get("/assignments/{proposal_id}", summary="The current assignment of a proposal")
    async def get_assignment(proposal_id: str, principal: AssignmentsReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.current_assignment(conn, proposal_id)
            state = mapping.assignment_state(row) if row is not None else None
            visible = state is not None and (
                principal.role != Role.UNIT or principal.unit in domain.route_of(state).units
            )
            if state is None or not visible:
                raise Problem(404, "Not found", f"No assignment of proposal {proposal_id} that you may see.")
            answers = mapping.unit_answers(await store.responses_of(conn, state.id))
            return views.assignment_view(state, answers, calendar=ctx.calendar)

    missing = "No assignment of proposal {} yet; it is routed once filed."

    async def on_assignment(
        request: Request,
        principal: Principal,
        key: str | None,
        body: BaseModel | None,
        proposal_id: str,
        use_case: Callable[[UnitOfWork, Actor, str | None], Awaitable[dict[str, Any]]],
    ) -> Any:
        """A step on a proposal's assignment by the caller (`use_case` gets the unit of work, the caller and
        the request's correlation id); the answer is the assignment as it now stands."""
        actor, correlation_id = principal.as_actor(), request.state.correlation_id

        def taken(uow: UnitOfWork) -> Awaitable[dict[str, Any]]:
            return use_case(uow, actor, correlation_id)

        return await write(request, principal, key, body, taken, missing=missing.format(proposal_id))

    async def respond(
        request: Request, principal: Principal, key: str | None, proposal_id: str, body: Dispute | None
    ) -> Any:
        """签收 (no body) or 异议 (with its reason), by the calling unit."""
        reason = body.reason if body is not None else None

        def answered(uow: UnitOfWork, actor: Actor, correlation_id: str | None) -> Awaitable[dict[str, Any]]:
            return service.respond(
                uow, proposal_id, actor, dispute_reason=reason, correlation_id=correlation_id, ctx=ctx, now=clock()
            )

        return await on_assignment(request, principal, key, body, proposal_id, answered)

    @routes.post("/assignments/{proposal_id}/confirm", summary="Confirm the routing (交办)")
    async def confirm(
        proposal_id: str,
        body: Confirmation,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        async def assign(uow: UnitOfWork, actor: Actor, correlation_id: str | None) -> dict[str, Any]:
            override = None
            if body.lead_unit is not None:
                override = domain.route_of_form(
                    body.form, body.lead_unit, body.co_units or [], body.split_units or [], ("交办机关调整",)
                )
            elif body.co_units is not None or body.split_units is not None or body.form is not None:
                raise RuleViolation("override_names_lead", "to change the routing, give lead_unit too")
            return await service.assign(uow, proposal_id, override, actor, correlation_id, ctx, clock())

        return await on_assignment(request, principal, idempotency_key, body, proposal_id, assign)

    @routes.post("/assignments/{proposal_id}/accept", summary="Accept the assignment (签收), by a unit of it")
    async def accept(
        proposal_id: str, request: Request, principal: UnitCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await respond(request, principal, idempotency_key, proposal_id, None)

    @routes.post("/assignments/{proposal_id}/dispute", summary="Dispute the assignment (异议), within the window")
    async def dispute(
        proposal_id: str, body: Dispute, request: Request, principal: UnitCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await respond(request, principal, idempotency_key, proposal_id, body)

    @routes.post("/assignments/{proposal_id}/reassign", summary="Reassign to other units (改办)")
    async def reassign(
        proposal_id: str,
        body: Reassignment,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        async def move(uow: UnitOfWork, actor: Actor, correlation_id: str | None) -> dict[str, Any]:
            route = domain.route_of_form(body.form, body.lead_unit, body.co_units, body.split_units)
            return await service.reassign(uow, proposal_id, route, body.reason, actor, correlation_id, ctx, clock())

        return await on_assignment(request, principal, idempotency_key, body, proposal_id, move)

    @routes.post("/assignments/{proposal_id}/uphold", summary="Keep the assignment despite the dispute (维持)")
    async def uphold(
        proposal_id: str,
        body: Upholding,
        request: Request,
        principal: DispatcherCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:

        def upheld(uow: UnitOfWork, actor: Actor, correlation_id: str | None) -> Awaitable[dict[str, Any]]:
            return service.uphold(uow, proposal_id, body.note, actor, correlation_id, ctx, clock())

        return await on_assignment(request, principal, idempotency_key, body, proposal_id, upheld)

    # Key proposals (重点提案) ------------------------------------------------------------------------

    @routes.post(
        "/key-proposals", status_code=201, summary="Designate key proposals (重点提案)", tags=["key proposals"]
    )
    async def designate(
        body: KeyDesignation, request: Request, principal: CommitteeCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:

        async def designate_key(uow: UnitOfWork) -> dict[str, Any]:
            items = await service.designate_key(
                uow,
                proposal_ids=body.proposal_ids,
                series_id=body.series_id,
                supervising_leader=body.supervising_leader,
                leading_leader=body.leading_leader,
                actor=principal.as_actor(),
                correlation_id=request.state.correlation_id,
                now=clock(),
            )
            return {"items": items}

        return await write(request, principal, idempotency_key, body, designate_key, missing="", status=201)

    @routes.get(
        "/key-proposals", summary="Key proposals; a leader sees those it supervises or leads", tags=["key proposals"]
    )
    async def list_key(principal: KeyProposalsReader, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        leader = principal.id if principal.role == Role.LEADER else None
        async with runtime.engine.connect() as conn:
            rows = await store.key_designations(conn, leader=leader, limit=limit, offset=offset)
        return {"items": [views.key_view(row) for row in rows], "limit": limit, "offset": offset}

    return routes
