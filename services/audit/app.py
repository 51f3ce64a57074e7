"""Audit (审计): wiring and lifespan. `proposalflow run audit` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit import api, handlers, store
from shared import events
from shared.runtime import ServiceRuntime

AUDITED_TOPICS = [*events.ALL_TOPICS, *(events.dlq_topic(s) for s in ("intake", "assignment", "progress", "notify"))]


def build() -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(name="audit", metadata=store.metadata)
    runtime.consume(
        AUDITED_TOPICS,
        handlers.on_any_event,
        dedupe_key=handlers.occurrence_key,
        description="Every topic, inbound commands and dead letters included, into the audit log.",
    )
    app = runtime.http_app(
        [api.router(runtime)],
        title="ProposalFlow audit",
        description="Append-only, tamper-evident record of everything that happened (审计).",
    )
    return runtime, app


runtime, app = build()
