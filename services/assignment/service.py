"""Assignment's use cases: route a filed proposal (交办建议), assign it (交办), the units' answers
(签收/异议), the dispatcher's settlement (改办/维持), the dispute-window sweep, key proposals
(重点提案) and the catalogs.

Each reads as: load (the unit of work) → decide (the `Assignment` aggregate and the rules in
domain.py) → save state and events (`uow.commit()`, in the door's transaction). HTTP routes (api.py) and
the consumer of `proposalflow.proposals` (handlers.py) call these functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.assignment import domain, views
from services.assignment.catalogs import load_labelled
from services.assignment.domain import Assignment, Leader, Route, RoutingRules, RoutingTable, Unit
from services.assignment.learning import Example, UnitRanker, proposal_text
from services.assignment.unit_of_work import UnitOfWork
from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import Actor, KeyProposalDesignated, ProposalFiled, ProposalSubmitted, Role
from shared.policy import Policy, WorkingCalendar, local_date

SYSTEM = Actor(id="assignment-engine", role=Role.SYSTEM)

Clock = Callable[[], datetime]


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
    def from_labelled_set(cls, path: Path | None = None) -> Router:
        """The ranking learned from a city's labelled proposals (`path`; unset: Dongguan's)."""
        seed = [item.example() for item in (load_labelled(path) if path is not None else load_labelled())]
        return cls(seed=seed, ranker=UnitRanker(seed))

    async def refresh(self, uow: UnitOfWork) -> None:
        history = [
            Example(proposal_text(row["title"], row["body"], row["suggestions"] or []), row["lead_unit"])
            for row in await uow.learned_history()
        ]
        self.ranker = UnitRanker([*self.seed, *history])


@dataclass(frozen=True)
class Context:
    """What the use cases need besides storage: the policy, its calendar, the ranking."""

    policy: Policy
    calendar: WorkingCalendar
    router: Router


# Seeding and catalogs ------------------------------------------------------------------------------


async def seed(uow: UnitOfWork, table: RoutingTable) -> None:
    """Add the seed units and leaders the catalogs lack, and the rules if none were saved (edits are kept)."""
    async with uow:
        units, leaders = await uow.units(), await uow.leaders()
        for unit in table.units:
            if unit.id not in units:
                uow.put_unit(unit.model_dump(), new=True)
        for leader in table.leaders:
            if leader.id not in leaders:
                uow.put_leader(leader.model_dump(), new=True)
        if await uow.routing_document() is None:
            uow.put_routing_rules(table.rules_only().model_dump(), "seed", datetime.now(UTC), new=True)
        await uow.commit()


async def routing_rules(uow: UnitOfWork) -> RoutingRules:
    document = await uow.routing_document()
    if document is None:
        raise NotFound("routing rules")
    return RoutingRules.model_validate(document)


def _named_by(rules: RoutingRules) -> set[str]:
    return {rules.fallback, *rules.category_defaults.values(), *(u for r in rules.rules for u in (r.lead, *r.co))}


async def save_routing_rules(uow: UnitOfWork, rules: RoutingRules, policy: Policy, actor: Actor) -> None:
    async with uow:
        active = [unit for unit, row in (await uow.units()).items() if row["active"]]
        domain.rules_must_name_known_units(rules, active, policy.categories)
        uow.put_routing_rules(rules.model_dump(), actor.id, datetime.now(UTC), new=False)
        await uow.commit()


async def create_unit(uow: UnitOfWork, unit: Unit) -> dict[str, Any]:
    async with uow:
        if unit.id in await uow.units():
            raise StateConflict("unit_id_unique", f"unit {unit.id} exists; change it with PATCH /units/{unit.id}")
        uow.put_unit(unit.model_dump(), new=True)
        await uow.commit()
    return unit.model_dump()


async def update_unit(uow: UnitOfWork, unit_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    async with uow:
        catalog = await uow.units()
        if unit_id not in catalog:
            raise NotFound(unit_id)
        if changes.get("active") is False and unit_id in _named_by(await routing_rules(uow)):
            raise StateConflict(
                "unit_not_routed_to", f"the routing rules still name {unit_id}; change them first (PUT /routing-rules)"
            )
        merged = Unit.model_validate({**catalog[unit_id], **changes})
        uow.put_unit(merged.model_dump(), new=False)
        await uow.commit()
    return merged.model_dump()


async def delete_unit(uow: UnitOfWork, unit_id: str) -> None:
    """A unit no assignment or rule names is deleted; one that is referenced is deactivated instead."""
    async with uow:
        if unit_id not in await uow.units():
            raise NotFound(unit_id)
        if await uow.assignments_name(unit_id):
            raise StateConflict(
                "referenced_unit_deactivated_not_deleted",
                f"assignments name {unit_id}; deactivate it instead (PATCH /units/{unit_id} with active=false)",
            )
        if unit_id in _named_by(await routing_rules(uow)):
            raise StateConflict("unit_not_routed_to", f"the routing rules name {unit_id}; change them first")
        uow.delete_unit(unit_id)
        await uow.commit()


async def create_leader(uow: UnitOfWork, leader: Leader) -> dict[str, Any]:
    async with uow:
        if leader.id in await uow.leaders():
            raise StateConflict(
                "leader_id_unique", f"leader {leader.id} exists; change it with PATCH /leaders/{leader.id}"
            )
        uow.put_leader(leader.model_dump(), new=True)
        await uow.commit()
    return leader.model_dump()


async def update_leader(uow: UnitOfWork, leader_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    async with uow:
        catalog = await uow.leaders()
        if leader_id not in catalog:
            raise NotFound(leader_id)
        merged = Leader.model_validate({**catalog[leader_id], **changes})
        uow.put_leader(merged.model_dump(), new=False)
        await uow.commit()
    return merged.model_dump()


# Proposals and routing -----------------------------------------------------------------------------


async def on_submitted(uow: UnitOfWork, event: ProposalSubmitted) -> None:
    """Keep what routing and key designation need: the text, the suggestions, the series (系列提案)."""
    values = {
        "title": event.title,
        "body": event.body,
        "category": event.category,
        "series_id": event.series_id,
        "suggestions": [suggestion.text for suggestion in event.suggestions],
    }
    async with uow:
        known = await uow.proposal(event.proposal_id) is not None
        uow.put_proposal(event.proposal_id, values if known else {"status": "submitted", **values}, new=not known)
        await uow.commit()


async def on_filed(uow: UnitOfWork, event: ProposalFiled, ctx: Context, now: datetime) -> None:
    """立案 → a routing suggestion with its reasons; in `auto` mode it is assigned at once."""
    async with uow:
        proposal = await uow.proposal(event.proposal_id)
        if proposal is None:
            proposal = {"title": event.title, "body": "", "suggestions": []}
            values = {"title": event.title, "body": "", "category": event.category, "status": "filed"}
            uow.put_proposal(event.proposal_id, values, new=True)
        else:
            uow.put_proposal(event.proposal_id, {"status": "filed"}, new=False)
        if await uow.find_current(event.proposal_id) is None:
            catalog = await uow.units()
            names = {unit: row["short_name"] or row["name"] for unit, row in catalog.items() if row["active"]}
            text = proposal_text(proposal["title"], proposal["body"], proposal["suggestions"] or [])
            route, _ = domain.combined_route(
                proposal["title"],
                proposal["body"],
                event.category,
                await routing_rules(uow),
                ctx.router.ranker.rank(text),
                names,
            )
            suggestion = Assignment.suggest(
                str(uuid.uuid4()), event.proposal_id, route, catalog, event.correlation_id, now, SYSTEM
            )
            uow.add(suggestion)
            if ctx.policy.assignment_mode == "auto":
                suggestion.confirm(None, catalog, SYSTEM, event.correlation_id, ctx.policy, ctx.calendar, now)
        await uow.commit()


async def assign(
    uow: UnitOfWork,
    proposal_id: str,
    override: Route | None,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """交办: confirm the suggestion (or the dispatcher's edit of it) and compute the deadlines."""
    return await _decide_on_current(
        uow,
        proposal_id,
        ctx,
        lambda assignment, units: assignment.confirm(
            override, units, actor, correlation_id, ctx.policy, ctx.calendar, now
        ),
    )


async def _decide_on_current(
    uow: UnitOfWork,
    proposal_id: str,
    ctx: Context,
    decide: Callable[[Assignment, domain.Catalog], Assignment | None],
) -> dict[str, Any]:
    """Load the proposal's assignment in force and the units catalog, let the aggregate decide, save; the
    answer is the assignment in force after it (the successor `decide` returns, added, if any)."""
    async with uow:
        current = await uow.current(proposal_id)
        successor = decide(current, await uow.units())
        if successor is not None:
            uow.add(successor)
        await uow.commit()
    in_force = successor or current
    return views.assignment_view(in_force.state, in_force.responses, calendar=ctx.calendar)


# Units' answers and the dispatcher's settlement ------------------------------------------------------


async def respond(
    uow: UnitOfWork,
    proposal_id: str,
    actor: Actor,
    *,
    dispute_reason: str | None,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """签收 (no reason) or 异议 (with a reason), by the acting unit, once, within the dispute window."""
    today = local_date(now, ctx.policy.timezone)
    return await _decide_on_current(
        uow,
        proposal_id,
        ctx,
        lambda assignment, units: assignment.respond(actor, dispute_reason, units, correlation_id, today, now),
    )


async def reassign(
    uow: UnitOfWork,
    proposal_id: str,
    route: Route,
    reason: str,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """改办: a new assignment replaces the current one; its deadlines run afresh from now."""
    return await _decide_on_current(
        uow,
        proposal_id,
        ctx,
        lambda current, units: current.reassign(
            str(uuid.uuid4()), route, reason, units, actor, correlation_id, ctx.policy, ctx.calendar, now
        ),
    )


async def uphold(
    uow: UnitOfWork,
    proposal_id: str,
    note: str,
    actor: Actor,
    correlation_id: str | None,
    ctx: Context,
    now: datetime,
) -> dict[str, Any]:
    """维持交办: the disputing units keep the assignment; they count as having accepted it."""
    today = local_date(now, ctx.policy.timezone)
    return await _decide_on_current(
        uow, proposal_id, ctx, lambda assignment, units: assignment.uphold(note, units, actor, correlation_id, today)
    )


async def accept_lapsed(uow: UnitOfWork, ctx: Context, now: datetime) -> int:
    """异议期满: units that said nothing are deemed to accept (actor system); returns how many.

    Event ids are derived from the assignment and unit, so two replicas sweeping at once make one event.
    """
    today = local_date(now, ctx.policy.timezone)
    async with uow:
        catalog = await uow.units()
        deemed = sum(
            assignment.deem_silent_accepted(catalog, SYSTEM, today, now) for assignment in await uow.lapsed(today)
        )
        await uow.commit()
    return deemed


async def recompute_deadlines(
    uow: UnitOfWork, proposal_ids: Sequence[str], ctx: Context, actor: Actor, reason: str
) -> list[domain.DeadlineChange]:
    """期限调整: recompute the deadlines of the named proposals' assignments on the policy's calendar
    (after a year was declared); each assignment whose deadlines moved is saved with an
    `AssignmentDeadlinesChanged` in the outbox. Running it again changes nothing."""
    changes: list[domain.DeadlineChange] = []
    async with uow:
        for proposal_id in dict.fromkeys(proposal_ids):
            assignment = await uow.find_current(proposal_id)
            if assignment is not None:
                changes += assignment.recompute_deadlines(ctx.policy, ctx.calendar, actor, reason)
        await uow.commit()
    return changes


# Key proposals ---------------------------------------------------------------------------------------


async def designate_key(
    uow: UnitOfWork,
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
    async with uow:
        domain.key_designation_target(proposal_ids, series_id)
        domain.leaders_must_be_active(
            [supervising_leader, *([leading_leader] if leading_leader else [])], await uow.leaders()
        )
        if series_id:
            targets = [row["id"] for row in await uow.proposals_of_series(series_id) if row["status"] == "filed"]
            if not targets:
                raise RuleViolation("key_proposal_filed", f"no filed proposal of series {series_id} is known here yet")
        else:
            known = await uow.proposals_in(proposal_ids)
            unfiled = [pid for pid in proposal_ids if pid not in known or known[pid]["status"] != "filed"]
            if unfiled:
                raise RuleViolation(
                    "key_proposal_filed", f"only filed proposals can be key; not filed: {', '.join(unfiled)}"
                )
            targets = list(dict.fromkeys(proposal_ids))
        existing = await uow.key_designated(targets)
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
        events = [
            KeyProposalDesignated(
                proposal_id=pid,
                actor=actor,
                correlation_id=correlation_id,
                supervising_leader=supervising_leader,
                leading_leader=leading_leader,
                series_id=series_id,
            )
            for pid in targets
        ]
        uow.designate_key(rows, events)
        await uow.commit()
    return [views.key_view(row) for row in rows]
