"""Audit (审计): wiring and lifespan. `proposalflow run audit` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit import anchors, api, handlers, store
from services.audit.settings import AuditSettings
from shared import events
from shared.runtime import ServiceRuntime

# Every topic and the other services' dead letters; never audit's own, which would loop. The inbound command
# topics are read with every outside system's own (proposalflow.unit-reports.<system>), by pattern.
AUDITED_TOPICS = [*events.EVENT_TOPICS, *(events.dlq_topic(s) for s in ("intake", "assignment", "progress", "notify"))]
AUDITED_INBOUND_TOPICS = list(events.INBOUND_TOPICS)


def build() -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(name="audit", metadata=store.metadata)
    settings = AuditSettings()
    key = settings.key
    anchor_file = settings.anchor_file
    if anchor_file is not None:

        async def anchor() -> None:
            await anchors.anchor_head(runtime.engine, anchor_file)

        runtime.every(settings.anchor_interval_s, anchor, name="anchor")
    # Wired by hand rather than with `runtime.consume`, for the processor that records invalid records.
    processor = handlers.AuditProcessor(
        key=key,
        service=runtime.name,
        consumer=runtime.name,
        engine=runtime.engine,
        metadata=runtime.metadata,
        handler=handlers.recorder(key),
        producer=runtime.producer,
        dedupe_key=handlers.occurrence_key,
        retry_attempts=runtime.common.retry_attempts,
        base_delay=runtime.common.retry_base_delay_s,
        max_delay=runtime.common.retry_max_delay_s,
    )
    runtime.processors.append(processor)
    runtime.subscribe(
        processor,
        AUDITED_TOPICS,
        inbound=AUDITED_INBOUND_TOPICS,
        description="Every topic, inbound commands (each outside system's own topic too) and dead letters "
        "included, into the audit log.",
    )
    app = runtime.http_app(
        [api.router(runtime, key)],
        title="ProposalFlow audit",
        description="Append-only, tamper-evident record of everything that happened (审计).",
    )
    return runtime, app


runtime, app = build()
