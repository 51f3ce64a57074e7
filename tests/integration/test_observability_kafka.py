"""Observability on the real broker: one request's trace continues through the outbox, Kafka and the
consuming handler; the outbox backlog gauge grows during a broker outage and drains after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import APIRouter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from shared.db import add_plumbing_tables, create_all, create_engine, new_metadata
from shared.envelope import Envelope
from shared.events import Actor, ProposalWithdrawn, Role
from shared.observability import current_traceparent, use_tracer_provider
from shared.outbox import add_to_outbox
from shared.relay import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings, ServiceSettings
from tests.fakes import RecordingPublisher

metadata = new_metadata()
add_plumbing_tables(metadata)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def withdrawn(proposal_id: str) -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass
class Seen:
    """What the consuming handler saw: the envelope's traceparent and the one its own events get."""

    envelope: list[str | None] = field(default_factory=list)
    current: list[str | None] = field(default_factory=list)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(None)


@pytest.mark.kafka
async def test_one_request_and_the_handler_it_causes_share_one_trace(
    spans: InMemorySpanExporter, kafka_bootstrap: str, sqlite_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"itest.trace.{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()

    common = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, outbox_poll_interval_s=0.05)
    settings = ServiceSettings(service="intake", database_url=sqlite_url, consumer_group=f"itest-trace-{suffix}")
    runtime = ServiceRuntime(name="intake", metadata=metadata, common=common, settings=settings)
    await create_all(runtime.engine, metadata)
    seen = Seen()

    async def handler(conn: Any, envelope: Envelope, record: Any) -> None:
        seen.envelope.append(envelope.traceparent)
        seen.current.append(current_traceparent())

    runtime.consume([topic], handler, consumer=f"itest-trace-{suffix}")
    router = APIRouter()

    @router.post("/withdrawals")
    async def withdraw() -> dict[str, str]:
        async with runtime.transaction() as conn:
            await add_to_outbox(conn, metadata, "intake", [withdrawn("p-trace")], topic=topic)
        return {"status": "staged"}

    app = runtime.http_app([router], title="trace test", description="")
    await runtime.start()
    try:
        await eventually(lambda: runtime._broker_ready)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            response = await client.post("/withdrawals", headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
        assert response.status_code == 200
        await eventually(lambda: any(span.kind is SpanKind.CONSUMER for span in spans.get_finished_spans()))
        # Lag is recorded once the offset is committed: the one record was read, nothing is left.
        lag = {"group": f"itest-trace-{suffix}", "topic": topic, "partition": "0"}
        await eventually(lambda: REGISTRY.get_sample_value("proposalflow_consumer_lag", lag) == 0)
    finally:
        await runtime.stop()

    finished = spans.get_finished_spans()

    def one(kind: SpanKind) -> ReadableSpan:
        (span,) = [span for span in finished if span.kind is kind]
        return span

    server, producer, consumer = one(SpanKind.SERVER), one(SpanKind.PRODUCER), one(SpanKind.CONSUMER)
    assert {f"{span.context.trace_id:032x}" for span in (server, producer, consumer)} == {TRACE_ID}
    assert server.name == "POST /withdrawals"
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN  # type: ignore[union-attr]
    assert producer.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert consumer.parent.span_id == producer.context.span_id  # type: ignore[union-attr]
    assert consumer.attributes is not None and consumer.attributes["messaging.destination.name"] == topic
    assert consumer.attributes["proposalflow.outcome"] == "handled"
    # The handler's own events would carry the consumer span as their parent: the trace goes on.
    assert seen.current == [f"00-{TRACE_ID}-{consumer.context.span_id:016x}-01"]
    assert seen.envelope == [f"00-{TRACE_ID}-{producer.context.span_id:016x}-01"]


async def test_outbox_backlog_gauge_grows_during_an_outage_and_drains_after(db_url: str) -> None:
    engine = create_engine(db_url)
    await create_all(engine, metadata)
    service = f"itest-backlog-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await add_to_outbox(conn, metadata, service, [withdrawn("p-1"), withdrawn("p-2"), withdrawn("p-3")])
    publisher = RecordingPublisher(down=True)
    relay = OutboxRelay(engine, metadata, publisher, poll_interval=0.05, max_backoff=0.2, service=service)  # type: ignore[arg-type]

    def backlog() -> float | None:
        return REGISTRY.get_sample_value("proposalflow_outbox_backlog", {"service": service})

    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: backlog() == 3)
        publisher.down = False
        await eventually(lambda: backlog() == 0)
    finally:
        relay.stop()
        await task
        await engine.dispose()
    assert len(publisher.sent) == 3


@pytest.mark.kafka
async def test_consumer_lag_shows_a_stuck_consumer_and_drains_when_it_moves(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"itest.lag.{suffix}", f"itest-lag-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    common = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap, outbox_poll_interval_s=0.05)
    settings = ServiceSettings(service="intake", database_url=sqlite_url, consumer_group=group)
    runtime = ServiceRuntime(name="intake", metadata=metadata, common=common, settings=settings)
    await create_all(runtime.engine, metadata)
    released = asyncio.Event()
    handled: list[str] = []

    async def handler(conn: Any, envelope: Envelope, record: Any) -> None:
        await released.wait()  # stuck, as on a database that does not answer
        handled.append(envelope.id)

    runtime.consume([topic], handler, consumer=group)
    lag_sample = {"group": group, "topic": topic, "partition": "0"}

    async def lag() -> float | None:
        await runtime.measure_lag()
        return REGISTRY.get_sample_value("proposalflow_consumer_lag", lag_sample)

    await runtime.start()
    try:
        await eventually(lambda: runtime._broker_ready)
        async with runtime.transaction() as conn:
            await add_to_outbox(conn, metadata, "intake", [withdrawn(f"p-{n}") for n in range(5)], topic=topic)
        deadline = asyncio.get_running_loop().time() + 30
        while await lag() != 5:
            assert asyncio.get_running_loop().time() < deadline, f"lag stayed {await lag()}"
            await asyncio.sleep(0.1)
        released.set()
        await eventually(lambda: len(handled) == 5)
        while await lag() != 0:
            assert asyncio.get_running_loop().time() < deadline + 30, f"lag stayed {await lag()}"
            await asyncio.sleep(0.1)
    finally:
        released.set()
        await runtime.stop()
