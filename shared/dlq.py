"""Dead letters (`proposalflow.dlq.<service>`): look at them, and send them back once the cause is fixed.

A replayed record goes back to its original topic as it came (the `x-dlq-*` headers removed), so every
consumer of that topic sees it again; those that had already processed it skip it in their inbox. Replay
uses its own consumer group per service, committing after each record is re-published, so a replay that
stops half-way resumes where it left off and never re-sends what it already sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import dlq_topic
from shared.messaging import KafkaPublisher, kafka_client_options
from shared.settings import CommonSettings

DLQ_PREFIX = "x-dlq-"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, as an operator reads it."""

    offset: int
    partition: int
    original_topic: str
    error: str
    consumer: str
    failed_at: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, value) for name, value in self.headers if not name.startswith(DLQ_PREFIX)]


def _dead_letter(record: object) -> DeadLetter:
    headers = list(getattr(record, "headers", None) or [])
    found = {name: value.decode(errors="replace") for name, value in headers}
    return DeadLetter(
        offset=int(getattr(record, "offset", 0)),
        partition=int(getattr(record, "partition", 0)),
        original_topic=found.get("x-dlq-original-topic", ""),
        error=found.get("x-dlq-error", ""),
        consumer=found.get("x-dlq-consumer", ""),
        failed_at=found.get("x-dlq-failed-at", ""),
        key=getattr(record, "key", None),
        value=getattr(record, "value", None),
        headers=headers,
    )


async def _partitions(settings: CommonSettings, topic: str) -> list[int]:
    """The partitions of a topic, from fresh metadata (none if it does not exist yet)."""
    admin = AIOKafkaAdminClient(client_id="proposalflow-dlq", **kafka_client_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [entry for entry in described if entry.get("topic") == topic and not entry.get("error_code")]
    return sorted(part["partition"] for entry in found for part in entry.get("partitions", []))


async def _consume_to_end(
    settings: CommonSettings,
    service: str,
    group_id: str | None,
    visit: Callable[[DeadLetter], Awaitable[None]],
    limit: int | None,
) -> int:
    """Read the dead-letter topic up to its current end; `visit` each record; returns how many."""
    topic = dlq_topic(service)
    consumer = AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"proposalflow-dlq-{service}",
        **kafka_client_options(settings),
    )
    await consumer.start()
    seen = 0
    try:
        partitions = await _partitions(settings, topic)
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not assigned:
            return 0
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            committed = await consumer.committed(tp) if group_id else None
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        remaining = {tp for tp in assigned if await consumer.position(tp) < ends[tp]}
        while remaining and (limit is None or seen < limit):
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=100)
            for tp, records in batch.items():
                for record in records:
                    if limit is not None and seen >= limit:
                        break
                    if record.offset >= ends[tp]:
                        continue
                    await visit(_dead_letter(record))
                    seen += 1
                    if group_id:
                        await consumer.commit({tp: record.offset + 1})
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return seen
    finally:
        await consumer.stop()


async def list_dead_letters(settings: CommonSettings, service: str, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters of a service, oldest first per partition (read-only: commits nothing)."""
    found: list[DeadLetter] = []

    async def keep(letter: DeadLetter) -> None:
        found.append(letter)

    await _consume_to_end(settings, service, None, keep, limit)
    return found


async def replay(settings: CommonSettings, service: str, *, limit: int | None = None) -> int:
    """Send the service's dead letters back to their original topics; returns how many were sent."""
    publisher = KafkaPublisher(settings, client_id=f"proposalflow-dlq-replay-{service}")
    await publisher.start()

    async def send(letter: DeadLetter) -> None:
        if not letter.original_topic:
            raise ValueError(f"dead letter at offset {letter.offset} has no x-dlq-original-topic header")
        await publisher.send_and_wait(
            letter.original_topic, value=letter.value, key=letter.key, headers=letter.original_headers
        )

    try:
        return await _consume_to_end(settings, service, f"proposalflow-dlq-replay-{service}", send, limit)
    finally:
        await publisher.stop()
