"""Progress (办理进度): wiring and lifespan. `proposalflow run progress` serves `app`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.progress import api, handlers, service, store
from services.progress.unit_of_work import SqlUnitOfWork, deferring_writes, write_deferred
from shared import events
from shared.codes import codes_router
from shared.policy import WorkingCalendar, load_policy
from shared.runtime import ServiceRuntime


class SchedulerSettings(BaseSettings):
    """`PROPOSALFLOW_PROGRESS_SCHEDULER_INTERVAL_S`: how often deadlines are checked."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_PROGRESS_", extra="ignore")

    scheduler_interval_s: float = Field(default=300.0, gt=0)


class EarlyCommandSettings(BaseSettings):
    """How long a unit's command that arrives before progress has seen its proposal assigned is held."""

    model_config = SettingsConfigDict(env_prefix="PROPOSALFLOW_PROGRESS_", extra="ignore")

    early_command_hold_s: float = Field(
        default=900.0,
        ge=0,
        description="A unit command about a proposal progress does not yet know as assigned (交办 comes on "
        "another topic) is held and retried this long, then refused saying it may be resent; 0 refuses at once.",
    )
    early_command_retry_s: float = Field(default=5.0, gt=0, description="How often held unit commands are tried again.")


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
            events.HandlingDeadlineChanged,
            events.ImplementationEvaluationOpened,
            events.ImplementationEvaluated,
            events.ImplementationEvaluationClosed,
            events.MeasureReopened,
            events.MeasureRequested,
            events.MeasureAdded,
            events.EvaluationRejected,
            events.LeaderReportRejected,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    calendar = WorkingCalendar.from_policy(policy)
    runtime.consume(
        [events.PROPOSALS, events.ASSIGNMENTS],
        handlers.on_lifecycle_event,
        description="The lifecycle of every proposal, for the read model and timeline.",
        prepare=deferring_writes(handlers.prefetch_lifecycle),
        finish=write_deferred,
    )
    early = EarlyCommandSettings()
    unit_reports = runtime.consume(
        [events.UNIT_REPORTS],
        handlers.unit_report_handler(
            policy, runtime.common.allowed_sources, clock, timedelta(seconds=early.early_command_hold_s)
        ),
        consumer=handlers.UNIT_REPORTS_CONSUMER,
        prepare=handlers.prefetch_unit_reports,
        description="Unit reports (办理进展, 会办意见, 答复, 举措落实) from allow-listed unit systems, on the shared "
        "topic and each system's own (proposalflow.unit-reports.<system>); assignment carries out 签收 and 异议.",
        per_system=True,
    )
    runtime.consume(
        [events.SUBMISSIONS],
        handlers.evaluation_handler(policy, runtime.common.allowed_sources, clock),
        consumer="progress-member-commands",
        description="Evaluations (评价, 落实评价) from member platforms, on the shared topic and each system's own "
        "(proposalflow.submissions.<system>); the topic's other commands are intake's.",
        per_system=True,
    )
    runtime.consume(
        [events.LEADER_REPORTS],
        handlers.supervision_handler(policy, runtime.common.allowed_sources, clock),
        consumer="progress-leader-reports",
        description="Supervision records (督办) from allow-listed leaders' office systems, on the shared topic and "
        "each system's own (proposalflow.leader-reports.<system>).",
        per_system=True,
    )
    # A held command waits for its proposal's assignment, which another consumer reads: try them again.
    runtime.every(early.early_command_retry_s, unit_reports.rerun_all_parked)

    async def check_deadlines() -> None:
        async with runtime.transaction() as conn:
            await service.tick(SqlUnitOfWork(conn), clock(), policy, calendar)

    runtime.every(SchedulerSettings().scheduler_interval_s, check_deadlines)
    app = runtime.http_app(
        [api.router(runtime, policy, clock), codes_router(policy)],
        title="ProposalFlow progress",
        description="Handling, replies, evaluation, measures and the lifecycle read model (办理、答复、评价、落实).",
    )
    return runtime, app


runtime, app = build()
