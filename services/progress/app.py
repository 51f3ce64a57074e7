"""Progress (办理进度): wiring and lifespan. `proposalflow run progress` serves `app`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.progress import api, handlers, service, store
from services.progress.unit_of_work import SqlUnitOfWork
from shared import events
from shared.policy import WorkingCalendar, load_policy
from shared.runtime import ServiceRuntime


class SchedulerSettings(BaseSettings):
    """`PROPOSALFLOW_PROGRESS_SCHEDULER_INTERVAL_S`: how often deadlines are checked."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_PROGRESS_", extra="ignore")

    scheduler_interval_s: float = Field(default=300.0, gt=0)


def system_clock() -> datetime:
    return datetime.now(UTC)


def build(clock: Callable[[], datetime] = system_clock) -> tuple[ServiceRuntime, FastAPI]:
    """The service; `clock` is injectable so tests can run a year of deadlines in seconds."""
    runtime = ServiceRuntime(
        name="progress",
        metadata=store.metadata,
        publishes=[
            events.ProgressReported,
            events.CoOpinionSubmitted,
            events.ReplyDrafted,
            events.ReplyApproved,
            events.ReplyReturned,
            events.EvaluationSubmitted,
            events.RehandlingStarted,
            events.ProposalClosed,
            events.MeasureUpdated,
            events.ProposalImplemented,
            events.SupervisionRecorded,
            events.DeadlineApproaching,
            events.DeadlineOverdue,
            events.UnitReportRejected,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    calendar = WorkingCalendar.from_policy(policy)
    runtime.consume(
        [events.PROPOSALS, events.ASSIGNMENTS],
        handlers.on_lifecycle_event,
        description="The lifecycle of every proposal, for the read model and timeline.",
    )
    runtime.consume(
        [events.UNIT_REPORTS],
        handlers.unit_report_handler(policy, runtime.common.allowed_sources, clock),
        consumer="progress-unit-reports",
        description="Unit reports (办理进展, 会办意见, 答复) from allow-listed unit systems, on the shared topic and "
        "each system's own (proposalflow.unit-reports.<system>).",
        per_system=True,
    )

    async def check_deadlines() -> None:
        async with runtime.transaction() as conn:
            await service.tick(SqlUnitOfWork(conn), clock(), policy, calendar)

    runtime.every(SchedulerSettings().scheduler_interval_s, check_deadlines)
    app = runtime.http_app(
        [api.router(runtime, policy, clock)],
        title="ProposalFlow progress",
        description="Handling, replies, evaluation, measures and the lifecycle read model (办理、答复、评价、落实).",
    )
    return runtime, app


runtime, app = build()
