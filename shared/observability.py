"""JSON logs that carry the proposal and correlation ids, and the Prometheus metrics that matter."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_proposal_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("proposal_id", default=None)
_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(parent: str | None) -> str:
    """W3C trace context for the next hop: the caller's trace id (or a new one), a new span id."""
    match = _TRACEPARENT.match(parent or "")
    trace_id = match.group(1) if match else secrets.token_hex(16)
    flags = match.group(3) if match else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def current_traceparent() -> str | None:
    return _traceparent.get()


@contextlib.contextmanager
def bind_context(
    *, proposal_id: str | None = None, correlation_id: str | None = None, traceparent: str | None = None
) -> Iterator[None]:
    """Every log line written inside carries these ids; events staged inside carry the trace."""
    tokens = []
    if traceparent is not None:
        tokens.append((_traceparent, _traceparent.set(traceparent)))
    if proposal_id is not None:
        tokens.append((_proposal_id, _proposal_id.set(proposal_id)))
    if correlation_id is not None:
        tokens.append((_correlation_id, _correlation_id.set(correlation_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_correlation_id() -> str | None:
    return _correlation_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, proposal and correlation id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "message": record.getMessage(),
        }
        if (proposal_id := _proposal_id.get()) is not None:
            entry["proposal_id"] = proposal_id
        if (correlation_id := _correlation_id.get()) is not None:
            entry["correlation_id"] = correlation_id
        if (traceparent := _traceparent.get()) is not None:
            entry["trace_id"] = traceparent.split("-")[1]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


class Metrics:
    """The process's Prometheus metrics; `/metrics` exposes the default registry."""

    def __init__(self) -> None:
        self.events_processed = Counter(
            "proposalflow_events_processed_total",
            "Consumed records by consumer and outcome (handled, duplicate, parked, dead-lettered).",
            ["consumer", "outcome"],
        )
        self.retries = Counter("proposalflow_retries_total", "Handler retries.", ["consumer"])
        self.dead_letters = Counter(
            "proposalflow_dead_letters_total", "Records sent to the dead-letter topic.", ["consumer"]
        )
        self.handler_seconds = Histogram(
            "proposalflow_handler_seconds", "Time in a handler's transaction.", ["consumer"]
        )
        self.outbox_published = Counter("proposalflow_outbox_published_total", "Outbox rows published.")
        self.http_requests = Counter(
            "proposalflow_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"]
        )
        self.consumer_lag = Gauge(
            "proposalflow_consumer_lag",
            "Records on a partition not yet processed by this consumer group (high watermark - next offset), "
            "as of the last record it processed.",
            ["group", "topic", "partition"],
        )
        self.outbox_backlog = Gauge(
            "proposalflow_outbox_backlog",
            "Committed outbox rows not yet published to Kafka (grows while the broker is unreachable).",
            ["service"],
        )
        # Incremented by the notify service when a channel (e.g. sms, email) gives up on a delivery.
        self.deliveries_failed = Counter(
            "proposalflow_deliveries_failed_total", "Notification deliveries that failed, by channel.", ["channel"]
        )


METRICS = Metrics()
