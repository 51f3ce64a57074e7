"""Assignment (交办): wiring and lifespan. `proposalflow run assignment` serves `app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import api, catalogs, handlers, service, store
from services.assignment.service import Clock, Context, Router, system_clock
from services.assignment.unit_of_work import SqlUnitOfWork
from shared import events
from shared.policy import WorkingCalendar, load_policy
from shared.runtime import ServiceRuntime


class AssignmentSettings(BaseSettings):
    """`PROPOSALFLOW_ASSIGNMENT_*` beside the common service settings."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_ASSIGNMENT_", extra="ignore", env_ignore_empty=True)

    sweep_interval_s: float = Field(default=60.0, gt=0, description="How often lapsed dispute windows are settled.")
    learning_refresh_s: float = Field(default=600.0, gt=0, description="How often the learned ranking is rebuilt.")
    catalog_file: Path | None = Field(
        default=None,
        description="The city's units, leaders and routing rules (YAML, as `proposalflow city init` writes it), "
        "seeded at start; unset: Dongguan's (services/assignment/units.yaml).",
    )
    training_file: Path | None = Field(
        default=None,
        description="The city's past proposals with their units, the routing ranking's training data (YAML); "
        "unset: Dongguan's (services/assignment/data/labelled_proposals.yaml).",
    )


def build(clock: Clock = system_clock) -> tuple[ServiceRuntime, FastAPI]:
    settings = AssignmentSettings()
    runtime = ServiceRuntime(
        name="assignment",
        metadata=store.metadata,
        publishes=[
            events.AssignmentSuggested,
            events.ProposalAssigned,
            events.AssignmentAccepted,
            events.AssignmentDisputed,
            events.AssignmentDisputeUpheld,
            events.AssignmentReassigned,
            events.KeyProposalDesignated,
            events.AssignmentDeadlinesChanged,
            events.AssignmentReportRejected,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    ctx = Context(policy, WorkingCalendar.from_policy(policy), Router.from_labelled_set(settings.training_file))
    table = catalogs.load_routing(settings.catalog_file or catalogs.ROUTING_FILE)
    runtime.consume(
        [events.PROPOSALS],
        handlers.proposals_handler(ctx, clock),
        description="Filed proposals to route to their units.",
        prepare=handlers.prefetch_proposals,
    )
    runtime.consume(
        [events.UNIT_REPORTS],
        handlers.unit_report_handler(ctx, runtime.common.allowed_sources, clock),
        consumer="assignment-unit-reports",
        description="Units' 签收 and 异议 from allow-listed unit systems, on the shared topic and each system's own "
        "(proposalflow.unit-reports.<system>); progress carries out the other reports.",
        per_system=True,
    )

    async def seed_and_learn(conn: AsyncConnection) -> None:
        await service.seed(SqlUnitOfWork(conn), table)
        await ctx.router.refresh(SqlUnitOfWork(conn))

    async def sweep() -> None:
        async with runtime.transaction() as conn:
            await service.accept_lapsed(SqlUnitOfWork(conn), ctx, clock())

    async def relearn() -> None:
        async with runtime.engine.connect() as conn:
            await ctx.router.refresh(SqlUnitOfWork(conn))

    runtime.on_startup(seed_and_learn)
    runtime.every(settings.sweep_interval_s, sweep)
    runtime.every(settings.learning_refresh_s, relearn)
    app = runtime.http_app(
        [api.router(runtime, ctx, clock)],
        title="ProposalFlow assignment",
        description="Routing of filed proposals to lead and co-handling units (交办), disputes, key proposals.",
    )
    app.state.sweep = sweep
    app.state.seed_and_learn = seed_and_learn
    return runtime, app


runtime, app = build()
