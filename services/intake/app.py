"""Intake (提案受理): wiring and lifespan. `proposalflow run intake` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake import api, handlers, service, store
from services.intake.service import Clock
from services.intake.unit_of_work import SqlUnitOfWork
from shared import events
from shared.policy import load_policy
from shared.runtime import ServiceRuntime

COSIGN_SWEEP_INTERVAL_S = 60.0
"""How often closed cosign windows (联名确认期) are looked for; the window is counted in days, so a
minute late is on time."""


def build(clock: Clock = service.system_clock) -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(
        name="intake",
        metadata=store.metadata,
        publishes=[
            events.ProposalSubmitted,
            events.ProposalCosignRequested,
            events.ProposalCosigned,
            events.ProposalReviewStarted,
            events.ProposalFiled,
            events.ProposalNotFiled,
            events.ProposalMerged,
            events.ProposalReturned,
            events.ProposalResubmitted,
            events.ProposalWithdrawn,
            events.SubmissionRejected,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    runtime.consume(
        [events.SUBMISSIONS],
        handlers.submission_handler(policy, runtime.common.allowed_sources, clock),
        description="Member commands from member portals and the CPPCC platform: 提交提案, 联名确认, 撤案, 重新提交 "
        "(评价 and 落实评价 on this topic are progress's), on the shared topic and each outside system's own "
        "(proposalflow.submissions.<system>).",
        per_system=True,
    )

    async def close_cosign_windows() -> None:
        async with runtime.transaction() as conn:
            await service.close_cosign_windows(SqlUnitOfWork(conn), policy, now=clock())

    runtime.every(COSIGN_SWEEP_INTERVAL_S, close_cosign_windows, name="cosign-sweep")
    app = runtime.http_app(
        [api.router(runtime, policy, clock)],
        title="ProposalFlow intake",
        description="Submission and review of CPPCC proposals (提案提交与审查立案).",
    )
    return runtime, app


runtime, app = build()
