"""Progress (办理进度): wiring and lifespan. `proposalflow run progress` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.progress import api, handlers, store
from shared import events
from shared.runtime import ServiceRuntime


def build() -> tuple[ServiceRuntime, FastAPI]:
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
            events.SupervisionRecorded,
            events.DeadlineApproaching,
            events.DeadlineOverdue,
            events.UnitReportRejected,
        ],
    )
    runtime.consume(
        [events.PROPOSALS, events.ASSIGNMENTS],
        handlers.on_lifecycle_event,
        description="The lifecycle of every proposal, for the read model and timeline.",
    )
    app = runtime.http_app(
        [api.router(runtime)],
        title="ProposalFlow progress",
        description="Handling, replies, evaluation, measures and the lifecycle read model (办理、答复、评价、落实).",
    )
    return runtime, app


runtime, app = build()
