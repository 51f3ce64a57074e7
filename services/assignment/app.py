"""Assignment (交办): wiring and lifespan. `proposalflow run assignment` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.assignment import api, handlers, service, store
from shared import events
from shared.policy import WorkingCalendar, load_policy
from shared.runtime import ServiceRuntime


def build() -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(
        name="assignment",
        metadata=store.metadata,
        publishes=[
            events.AssignmentSuggested,
            events.ProposalAssigned,
            events.AssignmentAccepted,
            events.AssignmentDisputed,
            events.KeyProposalDesignated,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    calendar = WorkingCalendar.from_policy(policy)
    table = service.load_routing()
    runtime.consume(
        [events.PROPOSALS],
        handlers.proposals_handler(table, policy, calendar),
        description="Filed proposals to route to their units.",
    )
    runtime.on_startup(lambda conn: service.seed_units(conn, table))
    app = runtime.http_app(
        [api.router(runtime, policy, calendar)],
        title="ProposalFlow assignment",
        description="Routing of filed proposals to lead and co-handling units (交办), disputes, key proposals.",
    )
    return runtime, app


runtime, app = build()
