"""Assignment's use cases: route a filed proposal, and (in `confirm` mode) the dispatcher's confirmation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import domain, store
from services.assignment.domain import Route, RoutingTable
from shared.events import (
    Actor,
    AssignmentSuggested,
    ProposalAssigned,
    ProposalFiled,
    ProposalSubmitted,
    Role,
    UnitRef,
)
from shared.messaging import add_to_outbox
from shared.policy import Policy, WorkingCalendar

SERVICE = "assignment"
ROUTING_FILE = Path(__file__).with_name("units.yaml")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def load_routing(path: Path = ROUTING_FILE) -> RoutingTable:
    return RoutingTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


async def seed_units(conn: AsyncConnection, table: RoutingTable) -> None:
    """Add the seed units the catalog does not have yet (admins' edits are kept)."""
    existing = set((await conn.execute(select(store.units.c.id))).scalars().all())
    new = [unit.model_dump() for unit in table.units if unit.id not in existing]
    if new:
        await conn.execute(insert(store.units), new)


def _unit_ref(catalog: dict[str, dict[str, Any]], unit_id: str) -> UnitRef:
    unit = catalog.get(unit_id)
    return UnitRef(id=unit_id, name=unit["name"] if unit else unit_id)


async def on_submitted(conn: AsyncConnection, event: ProposalSubmitted) -> None:
    if await store.get_proposal(conn, event.proposal_id) is None:
        await conn.execute(
            insert(store.proposals).values(
                id=event.proposal_id, title=event.title, body=event.body, category=event.category, status="submitted"
            )
        )


async def on_filed(
    conn: AsyncConnection, event: ProposalFiled, table: RoutingTable, policy: Policy, calendar: WorkingCalendar
) -> None:
    """立案 → a routing suggestion; in `auto` mode it is assigned at once."""
    proposal = await store.get_proposal(conn, event.proposal_id)
    body = proposal["body"] if proposal else ""
    if proposal is None:
        await conn.execute(
            insert(store.proposals).values(
                id=event.proposal_id, title=event.title, body="", category=event.category, status="filed"
            )
        )
    else:
        await conn.execute(
            update(store.proposals).where(store.proposals.c.id == event.proposal_id).values(status="filed")
        )
    if await store.current_assignment(conn, event.proposal_id) is not None:
        return
    route = domain.suggest_route(event.title, body, event.category, table)
    now = datetime.now(UTC)
    assignment_id = str(uuid.uuid4())
    await conn.execute(
        insert(store.assignments).values(
            id=assignment_id,
            proposal_id=event.proposal_id,
            status="suggested",
            form=route.form.value,
            lead_unit=route.lead,
            co_units=list(route.co),
            reasons=list(route.reasons),
            suggested_at=now,
        )
    )
    catalog = await store.unit_catalog(conn)
    system = Actor(id="assignment-engine", role=Role.SYSTEM)
    await add_to_outbox(
        conn,
        store.metadata,
        SERVICE,
        [
            AssignmentSuggested(
                proposal_id=event.proposal_id,
                actor=system,
                correlation_id=event.correlation_id,
                form=route.form,
                lead_unit=_unit_ref(catalog, route.lead),
                co_units=[_unit_ref(catalog, u) for u in route.co],
                reasons=list(route.reasons),
            )
        ],
    )
    if policy.assignment_mode == "auto":
        await assign(conn, event.proposal_id, None, system, event.correlation_id, policy, calendar)


async def assign(
    conn: AsyncConnection,
    proposal_id: str,
    override: Route | None,
    actor: Actor,
    correlation_id: str | None,
    policy: Policy,
    calendar: WorkingCalendar,
) -> dict[str, Any]:
    """交办: confirm the suggestion (or the dispatcher's edit of it) and compute the deadlines."""
    current = await store.current_assignment(conn, proposal_id)
    if current is None:
        raise NotFound(proposal_id)
    if current["status"] != "suggested":
        raise Conflict(f"proposal {proposal_id} is already {current['status']}")
    catalog = await store.unit_catalog(conn)
    route = override or Route(current["lead_unit"], tuple(current["co_units"]), tuple(current["reasons"]))
    try:
        domain.units_must_exist([route.lead, *route.co], catalog)
    except ValueError as exc:
        raise Conflict(str(exc)) from exc
    now = datetime.now(UTC)
    due = domain.deadlines(now, bool(route.co), policy, calendar)
    await conn.execute(
        update(store.assignments)
        .where(store.assignments.c.id == current["id"])
        .values(
            status="assigned",
            form=route.form.value,
            lead_unit=route.lead,
            co_units=list(route.co),
            reply_due=due.reply_due,
            co_opinion_due=due.co_opinion_due,
            dispute_until=due.dispute_until,
            assigned_at=now,
        )
    )
    await add_to_outbox(
        conn,
        store.metadata,
        SERVICE,
        [
            ProposalAssigned(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=current["id"],
                form=route.form,
                lead_unit=_unit_ref(catalog, route.lead),
                co_units=[_unit_ref(catalog, unit) for unit in route.co],
                reply_due=due.reply_due,
                co_opinion_due=due.co_opinion_due,
                dispute_until=due.dispute_until,
                assigned_at=now,
            )
        ],
    )
    updated = await store.current_assignment(conn, proposal_id)
    assert updated is not None
    return assignment_view(updated)


def assignment_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "proposal_id": row["proposal_id"],
        "status": row["status"],
        "form": row["form"],
        "lead_unit": row["lead_unit"],
        "co_units": row["co_units"],
        "reasons": row["reasons"],
        "reply_due": row["reply_due"].isoformat() if row["reply_due"] else None,
        "co_opinion_due": row["co_opinion_due"].isoformat() if row["co_opinion_due"] else None,
        "dispute_until": row["dispute_until"].isoformat() if row["dispute_until"] else None,
        "assigned_at": row["assigned_at"].isoformat() if row["assigned_at"] else None,
    }
