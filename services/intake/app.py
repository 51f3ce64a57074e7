"""Intake (提案受理): wiring and lifespan. `proposalflow run intake` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake import api, handlers, store
from shared import events
from shared.policy import load_policy
from shared.runtime import ServiceRuntime


def build() -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(
        name="intake",
        metadata=store.metadata,
        publishes=[
            events.ProposalSubmitted,
            events.ProposalFiled,
            events.ProposalNotFiled,
            events.ProposalMerged,
            events.ProposalWithdrawn,
            events.SubmissionRejected,
        ],
    )
    policy = load_policy(runtime.common.policy_file)
    runtime.consume(
        [events.SUBMISSIONS],
        handlers.submission_handler(policy, runtime.common.allowed_sources),
        description="Submission commands (提交提案) from member portals and the CPPCC platform.",
    )
    app = runtime.http_app(
        [api.router(runtime, policy)],
        title="ProposalFlow intake",
        description="Submission and review of CPPCC proposals (提案提交与审查立案).",
    )
    return runtime, app


runtime, app = build()
