"""Stand-ins for the broker in storage tests (the real broker is used in integration tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from shared.envelope import Envelope, to_kafka
from shared.producer import record_size


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class RecordingPublisher:
    """Records what would have been published; `down = True` simulates a broker outage. A record over
    `max_request_size` is refused as aiokafka's producer refuses it; `broker_limit` refuses larger ones
    as a broker with a lower `message.max.bytes` would."""

    sent: list[Sent] = field(default_factory=list)
    down: bool = False
    max_request_size: int = 1_048_576
    broker_limit: int | None = None

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        if self.down:
            raise KafkaConnectionError("broker down (simulated)")
        size = record_size(key, value, headers)
        if size > min(self.max_request_size, self.broker_limit or self.max_request_size):
            raise MessageSizeTooLargeError(f"the message is {size} bytes (simulated)")
        self.sent.append(Sent(topic, key, value, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await self.send(topic, value=value, key=key, headers=headers)


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record_of(envelope: Envelope, topic: str = "t", offset: int = 0) -> FakeRecord:
    key, value, headers = to_kafka(envelope)
    return FakeRecord(topic, 0, offset, key, value, headers)


def event_records(events: list[Any], first_offset: int = 0) -> list[FakeRecord]:
    """Records of these events (`shared.events` models), each on its own topic, from `first_offset` on."""
    return [
        record_of(
            Envelope(type=e.TYPE, source="/test", subject=e.proposal_id, data=e.model_dump(mode="json")), e.TOPIC, n
        )
        for n, e in enumerate(events, start=first_offset)
    ]
