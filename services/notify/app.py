"""Notify (通知): wiring and lifespan. `proposalflow run notify` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify import api, handlers, store
from shared import events
from shared.runtime import ServiceRuntime


def build() -> tuple[ServiceRuntime, FastAPI]:
    runtime = ServiceRuntime(
        name="notify",
        metadata=store.metadata,
        publishes=[events.NotificationDelivered, events.NotificationFailed],
    )
    runtime.consume(
        [events.PROPOSALS, events.ASSIGNMENTS, events.HANDLING],
        handlers.on_event,
        description="Every lifecycle event, to tell the right people.",
    )
    app = runtime.http_app(
        [api.router(runtime)],
        title="ProposalFlow notify",
        description="Notifications to proposers, units, leaders and the committee (通知).",
    )
    return runtime, app


runtime, app = build()
