"""JSON logs that carry the proposal and correlation ids, the Prometheus metrics that matter, and
OpenTelemetry traces that follow a proposal from an HTTP request through Kafka to every handler.

The trace context travels as the W3C `traceparent` (an HTTP header; on Kafka, a record header that is
also the CloudEvents distributed-tracing extension). Spans are exported over OTLP/HTTP only when an
endpoint is configured; otherwise nothing is recorded and the `traceparent` still propagates.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from shared.settings import CommonSettings

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


# Tracing ------------------------------------------------------------------------------------------

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer_provider: trace.TracerProvider | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Record spans with `provider` (None: the global one). Set by :func:`configure_tracing`; tests pass
    an SDK provider with an in-memory exporter."""
    global _tracer_provider
    _tracer_provider = provider


def otlp_tracer_provider(service: str, settings: CommonSettings) -> trace.TracerProvider | None:
    """An SDK provider exporting over OTLP/HTTP when `PROPOSALFLOW_OTEL_EXPORTER_OTLP_ENDPOINT` (or the
    standard `OTEL_EXPORTER_OTLP_ENDPOINT`) is set; None when neither is."""
    import os

    endpoint = settings.otel_exporter_otlp_endpoint
    if not (endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Without our endpoint the exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces") if endpoint else OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"proposalflow-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure_tracing(service: str, settings: CommonSettings) -> bool:
    """Record and export spans if an OTLP endpoint is configured; returns whether it did. Once per
    process: a provider already in use (another service in this process, a test's) is kept."""
    if _tracer_provider is not None:
        return False
    provider = otlp_tracer_provider(service, settings)
    if provider is None:
        return False
    use_tracer_provider(provider)
    return True


def _recording() -> bool:
    """Whether spans go anywhere: a provider of ours, or one installed globally (not the API's proxy)."""
    return _tracer_provider is not None or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _tracer() -> trace.Tracer:
    return (_tracer_provider or trace.get_tracer_provider()).get_tracer("proposalflow")


@contextlib.contextmanager
def traced(
    name: str, parent: str | None, *, kind: SpanKind = SpanKind.INTERNAL, attributes: dict[str, str] | None = None
) -> Iterator[str]:
    """A span that continues the trace of `parent` (a `traceparent` value, or None for a new trace);
    yields the `traceparent` of this hop, for the events staged inside. When spans are not recorded
    (no exporter configured) the hop still gets the caller's trace id and a new span id."""
    if not _recording():
        # Nothing would be recorded: skip OpenTelemetry's no-op span, which costs as much as a
        # database statement per record (docs/performance.md).
        yield child_traceparent(parent)
        return
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    with _tracer().start_as_current_span(name, context=context, kind=kind, attributes=attributes) as span:
        span_context = span.get_span_context()
        if span.is_recording() and span_context.is_valid:
            yield f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"
        else:
            yield child_traceparent(parent)


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


# Lines a person at a terminal does not need at INFO: FastStream's dump of every partition a consumer was
# given (and its note on each consumer task as it stops); aiokafka's talk while a group (re)balances or
# finds its coordinator, which it retries itself; uvicorn's start-up steps (its "running on" line stays);
# httpx's line per request (the portal's calls, readiness polls).
_CHATTER = (
    ("uvicorn.", re.compile(r"^(Started|Finished) server process|^(Waiting for )?[Aa]pplication (startup|shutdown)")),
    ("httpx", re.compile(r"^HTTP Request: ")),
    ("", re.compile(r"^Consumer \S* ?assigned to partitions: ")),
    ("", re.compile(r"^callback for Task-\d+ is being executed")),
    ("aiokafka.", re.compile(r"^Marking the coordinator dead")),
    (
        "aiokafka.",
        re.compile(r"^Heartbeat failed (for group \S+ because it is rebalancing|for group \S+: coordinator)"),
    ),
    ("aiokafka.", re.compile(r"^Group Coordinator Request failed: .*(GroupCoordinatorNotAvailable|NotCoordinator)")),
    (
        "aiokafka.",
        re.compile(
            r"^OffsetCommit failed for group \S+ due to group error "
            r"\((RebalanceInProgress|IllegalGeneration|UnknownMemberId)"
        ),
    ),
)


class DemoteChatter(logging.Filter):
    """Turn routine chatter into DEBUG lines, kept only when DEBUG is on."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and _is_chatter(record):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


def _is_chatter(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return any(record.name.startswith(prefix) and pattern.search(message) for prefix, pattern in _CHATTER)


_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_SERVICE_COLOURS = {
    "intake": "36",
    "assignment": "35",
    "progress": "34",
    "notify": "33",
    "audit": "32",
    "portal": "1;36",
}


class HumanFormatter(logging.Formatter):
    """One short line for a person at a terminal: local time, service, level, message, and the proposal
    the line is about; coloured unless `colour` is off."""

    def __init__(self, service: str, *, colour: bool) -> None:
        super().__init__()
        self.service = service
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        service = self._paint(_SERVICE_COLOURS.get(self.service, "1"), f"{self.service:<10}")
        level = self._paint(_LEVEL_COLOURS.get(record.levelname, "0"), f"{record.levelname:<7}")
        line = f"{self._paint('2', clock)} {service} {level} {record.getMessage()}"
        if (proposal_id := _proposal_id.get()) is not None:
            line += self._paint("2", f"  [{proposal_id}]")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def resolve_log_format(setting: str, stream: Any) -> Literal["human", "json"]:
    """`human` or `json` as set; `auto`: human lines for a person at a terminal, JSON lines otherwise
    (a container's log, a pipe, a file, a process manager)."""
    if setting in ("human", "json"):
        return setting  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "human" if isatty is not None and isatty() else "json"


def wants_colour(stream: Any) -> bool:
    """Colour at a terminal, or where FORCE_COLOR asks (`make run` passes its terminal on); never with NO_COLOR."""
    import os

    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or bool(getattr(stream, "isatty", lambda: False)())


def configure_logging(service: str, level: str = "INFO", *, log_format: str = "auto") -> None:
    stream = sys.stderr
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.setLevel(level.upper())
    if resolve_log_format(log_format, stream) == "human":
        handler.setFormatter(HumanFormatter(service, colour=wants_colour(stream)))
        # A person reads these; a log platform keeps everything (the partition lists show who held what).
        handler.addFilter(DemoteChatter(root.level))
    else:
        handler.setFormatter(JsonFormatter(service))
    root.handlers[:] = [handler]
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
        self.consumer_rebalances = Counter(
            "proposalflow_consumer_rebalances_total",
            "Partition assignments a consumer received (one per rebalance of its group it took part in).",
            ["group", "consumer"],
        )
        self.consumer_batches = Counter(
            "proposalflow_consumer_batches_total",
            "Batches a consumer handled (records per batch = records consumed / batches). A batch's fixed "
            "cost (a transaction, the inbox, a relay turn) is paid once, whatever its size.",
            ["consumer"],
        )
        self.relay_turns = Counter(
            "proposalflow_outbox_relay_turns_total",
            "Turns of the outbox relay, by whether they found rows to publish (`rows`: some or none); rows per "
            "turn = outbox rows published / turns with some.",
            ["service", "rows"],
        )
        self.outbox_backlog = Gauge(
            "proposalflow_outbox_backlog",
            "Committed outbox rows not yet published to Kafka (grows while the broker is unreachable).",
            ["service"],
        )
        self.outbox_failures = Counter(
            "proposalflow_outbox_failures_total",
            "Outbox rows the relay marked failed: refused for good (too large for the topic, not authorized), "
            "kept unsent until `proposalflow outbox retry`.",
            ["service"],
        )
        self.outbox_failed_rows = Gauge(
            "proposalflow_outbox_failed_rows",
            "Outbox rows marked failed and not retried yet (`proposalflow outbox failed <service>` lists them).",
            ["service"],
        )
        # Incremented by the notify service when a channel (e.g. sms, email) gives up on a delivery.
        self.deliveries_failed = Counter(
            "proposalflow_deliveries_failed_total", "Notification deliveries that failed, by channel.", ["channel"]
        )
        self.provisional_deadlines = Counter(
            "proposalflow_provisional_deadlines_total",
            "Events whose deadlines were computed on a provisional holiday calendar (a year the State Council has "
            "not announced yet, and the policy does not declare), by service and event type.",
            ["service", "type"],
        )


METRICS = Metrics()


def kafka_attributes(topic: str) -> dict[str, str]:
    """OpenTelemetry messaging attributes of a Kafka topic."""
    return {"messaging.system": "kafka", "messaging.destination.name": topic}


_provisional_log = logging.getLogger("proposalflow.calendar")


def note_provisional_deadlines(service: str, event: Any) -> bool:
    """暂定日历: warn (a log line and `proposalflow_provisional_deadlines_total`) when ``event`` carries
    deadlines computed on a provisional calendar (its ``provisional_calendar`` flag). Returns whether it did."""
    if not getattr(event, "provisional_calendar", False):
        return False
    dates = ", ".join(
        f"{name} {value.isoformat()}"
        for name, value in vars(event).items()
        if isinstance(value, date) and not isinstance(value, datetime) and not name.startswith("previous_")
    )
    METRICS.provisional_deadlines.labels(service=service, type=event.TYPE).inc()
    _provisional_log.warning(
        "deadline on a provisional calendar: %s of proposal %s (%s) falls in a year without an official "
        "holiday calendar (放假安排); declare the year in the policy (calendar.declared_years) once it is "
        "announced, then run `proposalflow deadlines recompute`",
        event.TYPE,
        getattr(event, "proposal_id", "?"),
        dates or "no date",
    )
    return True
