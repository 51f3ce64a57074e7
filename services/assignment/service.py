"""Assignment's use cases: route a filed proposal (交办建议), assign it (交办), the units' answers
(签收/异议), the dispatcher's settlement (改办/维持), the dispute-window sweep, key proposals
(重点提案) and the catalogs. Each reads as load → decide (domain) → save state + events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import domain, store
from services.assignment.catalogs import load_labelled
from services.assignment.domain import (
    AssignmentStatus,
    Leader,
    Route,
    RoutingRules,
    RoutingTable,
    Unit,
    UnitResponse,
)
from services.assignment.learning import Example, UnitRanker, proposal_text
from shared import db
from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import (
    Actor,
    AssignmentAccepted,
    AssignmentDisputed,
    AssignmentDisputeUpheld,
    AssignmentReassigned,
    AssignmentSuggested,
    Event,
    KeyProposalDesignated,
    ProposalAssigned,
    ProposalFiled,
    ProposalSubmitted,
    Role,
    UnitRef,
)
from shared.messaging import add_to_outbox
from shared.policy import Policy, WorkingCalendar, local_date

SERVICE = "assignment"
SYSTEM = Actor(id="assignment-engine", role=Role.SYSTEM)

Clock = Callable[[], datetime]
_TICK = timedelta(microseconds=1)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Router:
    """The learned ranking in memory: the labelled set plus this city's confirmed assignments.

    Rebuilt at start and then periodically (`refresh`), so replicas converge without a shared cache.
    """

    seed: list[Example] = field(default_factory=list)
    ranker: UnitRanker = field(default_factory=lambda: UnitRanker([]))

    @classmethod
    def from_labelled_set(cls) -> Router:
        seed = [item.example() for item in load_labelled()]
        return cls(seed=seed, ranker=UnitRanker(seed))

    async def refresh(self, conn: AsyncConnection) -> None:
        history = [
            Example(proposal_text(row["title"], row["body"], row["suggestions"] or []), row["lead_unit"])
            for row in await store.learned_history(conn)
        ]
        self.ranker = UnitRanker([*self.seed, *history])


@dataclass(frozen=True)
class Context:
    """What the use cases need besides the connection: the policy, its calendar, the ranking."""

    policy: Policy
    calendar: WorkingCalendar
    router: Router


async def _stage(conn: AsyncConnection, events: Sequence[Event | tuple[Event, str]]) -> None:
    await add_to_outbox(conn, store.metadata, SERVICE, events)


# Seeding and catalogs ------------------------------------------------------------------------------


async def seed(conn: AsyncConnection, table: RoutingTable) -> None:
    """Add the seed units and leaders the catalogs lack, and the rules if none were saved (edits are kept)."""
    for target, items in ((store.units, table.units), (store.leaders, table.leaders)):
        existing = set((await conn.execute(select(target.c.id))).scalars().all())
        new = [item.model_dump() for item in items if item.id not in existing]
        if new:
            await conn.execute(insert(target), new)
    if await store.routing_document(conn) is None:
        await conn.execute(
            insert(store.routing_config).values(
                id=1, document=table.rules_only().model_dump(), updated_at=datetime.now(UTC), updated_by="seed"
            )
        )


async def routing_rules(conn: AsyncConnection) -> RoutingRules:
    document = await store.routing_document(conn)
    if document is None:
        raise NotFound("routing rules")
    return RoutingRules.model_validate(document)


async def save_routing_rules(conn: AsyncConnection, rules: RoutingRules, policy: Policy, actor: Actor) -> None:
    catalog = await store.unit_catalog(conn)
    active = [unit for unit, row in catalog.items() if row["active"]]
    domain.rules_must_name_known_units(rules, active, policy.categories)
    await conn.execute(
        update(store.routing_config)
        .where(store.routing_config.c.id == 1)
        .values(document=rules.model_dump(), updated_at=datetime.now(UTC), updated_by=actor.id)
    )


async def create_unit(conn: AsyncConnection, unit: Unit) -> dict[str, Any]:
    if unit.id in await store.unit_catalog(conn):
        raise StateConflict("unit_id_unique", f"unit {unit.id} exists; change it with PATCH /units/{unit.id}")
    await conn.execute(insert(store.units).values(**unit.model_dump()))
    return unit.model_dump()


async def update_unit(conn: AsyncConnection, unit_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    catalog = await store.unit_catalog(conn)
    if unit_id not in catalog:
        raise NotFound(unit_id)
    if changes.get("active") is False:
        rules = await routing_rules(conn)
        named = {rules.fallback, *rules.category_defaults.values(), *(u for r in rules.rules for u in (r.lead, *r.co))}
        if unit_id in named:
            raise StateConflict(
                "unit_not_routed_to", f"the routing rules still name {unit_id}; change them first (PUT /routing-rules)"
            )
    merged = Unit.model_validate({**catalog[unit_id], **changes})
    await conn.execute(update(store.units).where(store.units.c.id == unit_id).values(**merged.model_dump()))
    return merged.model_dump()


async def delete_unit(conn: AsyncConnection, unit_id: str) -> None:
    """A unit no assignment or rule names is deleted; one that is referenced is deactivated instead."""
    if unit_id not in await store.unit_catalog(conn):
        raise NotFound(unit_id)
    rows = (await conn.execute(select(store.assignments))).mappings()
    if any(unit_id in [r["lead_unit"], *r["co_units"], *(r["split_units"] or [])] for r in rows):
        raise StateConflict(
            "referenced_unit_deactivated_not_deleted",
            f"assignments name {unit_id}; deactivate it instead (PATCH /units/{unit_id} with active=false)",
        )
    rules = await routing_rules(conn)
    if unit_id in {
        rules.fallback,
        *rules.category_defaults.values(),
        *(u for r in rules.rules for u in (r.lead, *r.co)),
    }:
        raise StateConflict("unit_not_routed_to", f"the routing rules name {unit_id}; change them first")
    await conn.execute(delete(store.units).where(store.units.c.id == unit_id))


async def create_leader(conn: AsyncConnection, leader: Leader) -> dict[str, Any]:
    if leader.id in await store.leader_catalog(conn):
        raise StateConflict("leader_id_unique", f"leader {leader.id} exists; change it with PATCH /leaders/{leader.id}")
    await conn.execute(insert(store.leaders).values(**leader.model_dump()))
    return leader.model_dump()


async def update_leader(conn: AsyncConnection, leader_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    catalog = await store.leader_catalog(conn)
    if leader_id not in catalog:
        raise NotFound(leader_id)
    merged = Leader.model_validate({**catalog[leader_id], **changes})
    await conn.execute(update(store.leaders).where(store.leaders.c.id == leader_id).values(**merged.model_dump()))
    return merged.model_dump()


# Proposals and routing -----------------------------------------------------------------------------


def _unit_ref(catalog: dict[str, dict[str, Any]], unit_id: str) -> UnitRef:
    unit = catalog.get(unit_id)
    return UnitRef(id=unit_id, name=unit["name"] if unit else unit_id)


def route_of(row: dict[str, Any]) -> Route:
    return Route(row["lead_unit"], tuple(row["co_units"]), tuple(row["reasons"]), tuple(row["split_units"] or ()))


async def on_submitted(conn: AsyncConnection, event: ProposalSubmitted) -> None:
    """Keep what routing and key designation need: the text, the suggestions, the series (系列提案)."""
    values = {
        "title": event.title,
        "body": event.body,
        "category": event.category,
        "series_id": event.series_id,
        "suggestions": [suggestion.text for suggestion in event.suggestions],
    }
    if await store.get_proposal(conn, event.proposal_id) is None:
        await db.insert_rows(conn, store.proposals, {"id": event.proposal_id, "status": "submitted", **values})
    else:
        await db.update_by(conn, store.proposals, event.proposal_id, values)


async def on_filed(conn: AsyncConnection, event: ProposalFiled, ctx: Context, now: datetime) -> None:
    """立案 → a routing suggestion with its reasons; in `auto` mode it is assigned at once."""
    proposal = await store.get_proposal(conn, event.proposal_id)
    if proposal is None:
        proposal = {"title": event.title, "body": "", "suggestions": []}
        await db.insert_rows(
            conn,
            store.proposals,
            {"id": event.proposal_id, "title": event.title, "body": "", "category": event.category, "status": "filed"},
        )
    else:
        await db.update_by(conn, store.proposals, event.proposal_id, {"status": "filed"})
    if await store.current_assignment(conn, event.proposal_id) is not None:
        return
    catalog = await store.unit_catalog(conn)
    names = {unit: row["short_name"] or row["name"] for unit, row in catalog.items() if row["active"]}
    ranking = ctx.router.ranker.rank(proposal_text(proposal["title"], proposal["body"], proposal["suggestions"] or []))
    route, _ = domain.combined_route(
        proposal["title"], proposal["body"], event.category, await routing_rules(conn), ranking, names
    )
    assignment_id = str(uuid.uuid4())
    await db.insert_rows(
        conn,
        store.assignments,
        {
            "id": assignment_id,
            "proposal_id": event.proposal_id,
            "status": AssignmentStatus.SUGGESTED.value,
            "form": route.form.value,
            "lead_unit": route.lead,
            "co_units": list(route.co),
            "split_units": [],
            "reasons": list(route.reasons),
            "suggested_at": now,
        },
    )
    await _stage(
        conn,
        [
            AssignmentSuggested(
                proposal_id=event.proposal_id,
                actor=SYSTEM,
                correlation_id=event.correlation_id,
                form=route.form,
                lead_unit=_unit_ref(catalog, route.lead),
                co_units=[_unit_ref(catalog, u) for u in route.co],
                reasons=list(route.reasons),
            )
        ],
    )
    if ctx.policy.assignment_mode == "auto":
        await assign(conn, event.proposal_id, None, SYSTEM, event.correlation_id, ctx, now)


async def _current(conn: AsyncConnection, proposal_id: str) -> dict[str, Any]:
    current = await store.current_assignment(conn, proposal_id)
    if current is None:
        raise NotFound(proposal_id)
    return current


async def assign(
    conn: AsyncConnection,
    proposal_id: str,
    override: Route | None,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """交办: confirm the suggestion (or the dispatcher's edit of it) and compute the deadlines."""
    current = await _current(conn, proposal_id)
    domain.confirm_only_suggested(AssignmentStatus(current["status"]))
    catalog = await store.unit_catalog(conn)
    route = override or route_of(current)
    domain.units_must_be_active(route.units, catalog)
    due = domain.deadlines(now, bool(route.co), ctx.policy, ctx.calendar)
    await conn.execute(
        update(store.assignments)
        .where(store.assignments.c.id == current["id"])
        .values(
            status=AssignmentStatus.ASSIGNED.value,
            form=route.form.value,
            lead_unit=route.lead,
            co_units=list(route.co),
            split_units=list(route.split),
            reasons=list(route.reasons),
            reply_due=due.reply_due,
            co_opinion_due=due.co_opinion_due,
            dispute_until=due.dispute_until,
            assigned_at=now,
        )
    )
    await _stage(
        conn,
        [
            ProposalAssigned(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=current["id"],
                form=route.form,
                lead_unit=_unit_ref(catalog, route.lead),
                co_units=[_unit_ref(catalog, unit) for unit in route.co],
                split_units=[_unit_ref(catalog, unit) for unit in route.split],
                reply_due=due.reply_due,
                co_opinion_due=due.co_opinion_due,
                dispute_until=due.dispute_until,
                assigned_at=now,
            )
        ],
    )
    return await view(conn, proposal_id)


# Units' answers and the dispatcher's settlement ------------------------------------------------------


async def _settle(conn: AsyncConnection, row: dict[str, Any], today: Any) -> None:
    responses = {unit: UnitResponse(r["response"]) for unit, r in (await store.responses_of(conn, row["id"])).items()}
    status = domain.settled_status(route_of(row), responses, domain.dispute_window_open(row["dispute_until"], today))
    await conn.execute(update(store.assignments).where(store.assignments.c.id == row["id"]).values(status=status.value))


async def respond(
    conn: AsyncConnection,
    proposal_id: str,
    actor: Actor,
    *,
    dispute_reason: str | None,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """签收 (no reason) or 异议 (with a reason), by the acting unit, once, within the dispute window."""
    current = await _current(conn, proposal_id)
    responses = {
        unit: UnitResponse(r["response"]) for unit, r in (await store.responses_of(conn, current["id"])).items()
    }
    today = local_date(now, ctx.policy.timezone)
    unit = domain.unit_may_respond(
        actor.unit, route_of(current), AssignmentStatus(current["status"]), responses, current["dispute_until"], today
    )
    response = UnitResponse.ACCEPTED if dispute_reason is None else UnitResponse.DISPUTED
    await conn.execute(
        insert(store.unit_responses).values(
            assignment_id=current["id"],
            unit=unit,
            response=response.value,
            reason=dispute_reason or "",
            deemed=False,
            actor_id=actor.id,
            at=now,
        )
    )
    await _settle(conn, current, today)
    ref = _unit_ref(await store.unit_catalog(conn), unit)
    event: Event
    if dispute_reason is None:
        event = AssignmentAccepted(
            proposal_id=proposal_id, actor=actor, correlation_id=correlation_id, assignment_id=current["id"], unit=ref
        )
    else:
        event = AssignmentDisputed(
            proposal_id=proposal_id,
            actor=actor,
            correlation_id=correlation_id,
            assignment_id=current["id"],
            unit=ref,
            reason=dispute_reason,
        )
    await _stage(conn, [event])
    return await view(conn, proposal_id)


async def reassign(
    conn: AsyncConnection,
    proposal_id: str,
    route: Route,
    reason: str,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """改办: a new assignment replaces the current one; its deadlines run afresh from now."""
    current = await _current(conn, proposal_id)
    domain.reassign_before_acceptance(AssignmentStatus(current["status"]))
    catalog = await store.unit_catalog(conn)
    domain.units_must_be_active(route.units, catalog)
    due = domain.deadlines(now, bool(route.co), ctx.policy, ctx.calendar)
    await conn.execute(
        update(store.assignments)
        .where(store.assignments.c.id == current["id"])
        .values(status=AssignmentStatus.SUPERSEDED.value)
    )
    assignment_id = str(uuid.uuid4())
    await conn.execute(
        insert(store.assignments).values(
            id=assignment_id,
            proposal_id=proposal_id,
            status=AssignmentStatus.ASSIGNED.value,
            form=route.form.value,
            lead_unit=route.lead,
            co_units=list(route.co),
            split_units=list(route.split),
            reasons=[f"改办: {reason}" if reason else "改办"],
            reply_due=due.reply_due,
            co_opinion_due=due.co_opinion_due,
            dispute_until=due.dispute_until,
            # Strictly later than the superseded row, so it is the current one even within a clock tick.
            suggested_at=max(now, current["suggested_at"]) + _TICK,
            assigned_at=now,
            previous_assignment_id=current["id"],
        )
    )
    await _stage(
        conn,
        [
            AssignmentReassigned(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=assignment_id,
                previous_assignment_id=current["id"],
                form=route.form,
                lead_unit=_unit_ref(catalog, route.lead),
                co_units=[_unit_ref(catalog, unit) for unit in route.co],
                split_units=[_unit_ref(catalog, unit) for unit in route.split],
                reply_due=due.reply_due,
                co_opinion_due=due.co_opinion_due,
                dispute_until=due.dispute_until,
                assigned_at=now,
                reason=reason,
            )
        ],
    )
    return await view(conn, proposal_id)


async def uphold(
    conn: AsyncConnection,
    proposal_id: str,
    note: str,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """维持交办: the disputing units keep the assignment; they count as having accepted it."""
    current = await _current(conn, proposal_id)
    domain.uphold_only_disputed(AssignmentStatus(current["status"]))
    responses = await store.responses_of(conn, current["id"])
    disputing = [unit for unit, row in responses.items() if row["response"] == UnitResponse.DISPUTED.value]
    await conn.execute(
        update(store.unit_responses)
        .where(store.unit_responses.c.assignment_id == current["id"])
        .where(store.unit_responses.c.unit.in_(disputing))
        .values(response=UnitResponse.UPHELD.value)
    )
    await _settle(conn, current, local_date(now, ctx.policy.timezone))
    catalog = await store.unit_catalog(conn)
    await _stage(
        conn,
        [
            AssignmentDisputeUpheld(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                assignment_id=current["id"],
                units=[_unit_ref(catalog, unit) for unit in disputing],
                note=note,
            )
        ],
    )
    return await view(conn, proposal_id)


async def accept_lapsed(conn: AsyncConnection, ctx: Context, now: datetime) -> int:
    """异议期满: units that said nothing are deemed to accept (actor system); returns how many.

    Event ids are derived from the assignment and unit, so two replicas sweeping at once make one event.
    """
    today = local_date(now, ctx.policy.timezone)
    catalog = await store.unit_catalog(conn)
    deemed = 0
    for row in await store.open_windows_closed_before(conn, today):
        responses = {u: UnitResponse(r["response"]) for u, r in (await store.responses_of(conn, row["id"])).items()}
        silent = domain.silent_units(route_of(row), responses)
        events: list[Event | tuple[Event, str]] = []
        for unit in silent:
            await conn.execute(
                insert(store.unit_responses).values(
                    assignment_id=row["id"],
                    unit=unit,
                    response=UnitResponse.ACCEPTED.value,
                    reason="",
                    deemed=True,
                    actor_id=SYSTEM.id,
                    at=now,
                )
            )
            accepted = AssignmentAccepted(
                proposal_id=row["proposal_id"],
                actor=SYSTEM,
                assignment_id=row["id"],
                unit=_unit_ref(catalog, unit),
                deemed=True,
            )
            events.append((accepted, str(uuid.uuid5(uuid.NAMESPACE_URL, f"deemed-accept/{row['id']}/{unit}"))))
        await _stage(conn, events)
        await _settle(conn, row, today)
        deemed += len(silent)
    return deemed


# Key proposals ---------------------------------------------------------------------------------------


async def designate_key(
    conn: AsyncConnection,
    *,
    proposal_ids: Sequence[str],
    series_id: str | None,
    supervising_leader: str,
    leading_leader: str | None,
    actor: Actor,
    correlation_id: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """重点提案: one designation (and one event) per proposal, alone or as a whole series."""
    domain.key_designation_target(proposal_ids, series_id)
    domain.leaders_must_be_active(
        [supervising_leader, *([leading_leader] if leading_leader else [])], await store.leader_catalog(conn)
    )
    if series_id:
        targets = [row["id"] for row in await store.proposals_of_series(conn, series_id) if row["status"] == "filed"]
        if not targets:
            raise RuleViolation("key_proposal_filed", f"no filed proposal of series {series_id} is known here yet")
    else:
        known = await store.proposals_in(conn, proposal_ids)
        unfiled = [pid for pid in proposal_ids if pid not in known or known[pid]["status"] != "filed"]
        if unfiled:
            raise RuleViolation(
                "key_proposal_filed", f"only filed proposals can be key; not filed: {', '.join(unfiled)}"
            )
        targets = list(dict.fromkeys(proposal_ids))
    existing = (
        (
            await conn.execute(
                select(store.key_proposals.c.proposal_id).where(store.key_proposals.c.proposal_id.in_(targets))
            )
        )
        .scalars()
        .all()
    )
    if existing:
        raise StateConflict("key_designated_once", f"already key proposals: {', '.join(sorted(existing))}")
    rows = [
        {
            "proposal_id": pid,
            "series_id": series_id,
            "supervising_leader": supervising_leader,
            "leading_leader": leading_leader,
            "designated_by": actor.id,
            "designated_at": now,
        }
        for pid in targets
    ]
    await conn.execute(insert(store.key_proposals), rows)
    await _stage(
        conn,
        [
            KeyProposalDesignated(
                proposal_id=pid,
                actor=actor,
                correlation_id=correlation_id,
                supervising_leader=supervising_leader,
                leading_leader=leading_leader,
                series_id=series_id,
            )
            for pid in targets
        ],
    )
    return [key_view(row) for row in rows]


def key_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "proposal_id": row["proposal_id"],
        "series_id": row["series_id"],
        "supervising_leader": row["supervising_leader"],
        "leading_leader": row["leading_leader"],
        "designated_at": row["designated_at"].isoformat(),
    }


# Views -----------------------------------------------------------------------------------------------


async def view(conn: AsyncConnection, proposal_id: str) -> dict[str, Any]:
    row = await _current(conn, proposal_id)
    return assignment_view(row, await store.responses_of(conn, row["id"]))


def assignment_view(row: dict[str, Any], responses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "proposal_id": row["proposal_id"],
        "status": row["status"],
        "form": row["form"],
        "lead_unit": row["lead_unit"],
        "co_units": row["co_units"],
        "split_units": row["split_units"] or [],
        "reasons": row["reasons"],
        "reply_due": row["reply_due"].isoformat() if row["reply_due"] else None,
        "co_opinion_due": row["co_opinion_due"].isoformat() if row["co_opinion_due"] else None,
        "dispute_until": row["dispute_until"].isoformat() if row["dispute_until"] else None,
        "assigned_at": row["assigned_at"].isoformat() if row["assigned_at"] else None,
        "previous_assignment_id": row["previous_assignment_id"],
        "responses": [
            {"unit": unit, "response": r["response"], "reason": r["reason"], "deemed": r["deemed"]}
            for unit, r in sorted((responses or {}).items())
        ],
    }
