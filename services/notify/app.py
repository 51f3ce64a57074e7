"""Notify (通知): wiring and lifespan. `proposalflow run notify` serves `app`."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify import api, handlers, store
from services.notify.delivery import DeliveryWorker
from services.notify.rules import load_rules
from services.notify.service import Notifier
from services.notify.settings import NotifySettings
from shared import events
from shared.runtime import ServiceRuntime


def build(settings: NotifySettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or NotifySettings()
    # A broken rules file stops the service at start, naming the rule, rather than at the first event.
    notifier = Notifier(rules=load_rules(settings.rules_path, settings.timezone), settings=settings)
    runtime = ServiceRuntime(
        name="notify",
        metadata=store.metadata,
        publishes=[events.NotificationDelivered, events.NotificationAttemptFailed, events.NotificationFailed],
    )
    processor = runtime.consume(
        [events.PROPOSALS, events.ASSIGNMENTS, events.HANDLING],
        handlers.on_event(notifier),
        description="Every lifecycle event, to tell the right people.",
    )
    # A parked event is re-run after the next event of its proposal; when the event it waited for was
    # handled at the same moment on another topic, no next event may come, so sweep now and then.
    runtime.every(settings.parked_sweep_interval_s, processor.rerun_all_parked, name="parked-sweep")
    worker = DeliveryWorker(runtime.engine, settings, after_commit=runtime.relay.wake)
    runtime.every(settings.delivery_poll_interval_s, worker.run_once, name="deliveries")
    app = runtime.http_app(
        [
            api.inbox_router(runtime),
            api.preferences_router(runtime),
            api.contacts_router(runtime),
            api.deliveries_router(runtime),
        ],
        title="ProposalFlow notify",
        description="Notifications to proposers, units, leaders and the committee (通知).",
    )
    return runtime, app


runtime, app = build()
