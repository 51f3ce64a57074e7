"""Dead letters (`proposalflow.dlq.<service>`): the forms a letter is written in, and for an operator, look
at them and send them back once the cause is fixed.

The processor (shared/processor.py) writes a record it gives up on in the largest of its forms
(:func:`dead_letter_forms`) within the producer's `max_request_size`.

A replayed record goes back to its original topic as it came (the `x-dlq-*` headers removed), so every
consumer of that topic sees it again; those that had already processed it skip it in their inbox. Replay
uses its own consumer group per service, committing after each record is re-published, so a replay that
stops half-way resumes where it left off and never re-sends what it already sent.

A dead letter that was too large to send whole left out the original's value (and, rarer, its headers
and key), naming it by `x-dlq-original-topic/-partition/-offset` and `x-dlq-value-sha256`
(:func:`dead_letter_forms`). Replay fetches such an original from its source topic and sends
it back exactly as it was. If retention has taken it, or the offset now holds another record, replay
refuses (:class:`OriginalUnavailable`, naming topic[partition]@offset) and stops there, committing
nothing past it: dropping the event is an operator's decision, not the tool's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import dlq_topic
from shared.producer import KafkaPublisher, kafka_client_options, record_size
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from shared.processor import Record

DLQ_PREFIX = "x-dlq-"

FETCH_ORIGINAL_TIMEOUT_S = 30.0
"""How long replay waits for an original it knows is within its topic's offsets."""


class OriginalUnavailable(LookupError):
    """A dead letter left out part of its original, and the original is no longer in its source topic."""


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
    original_partition: int | None = None
    original_offset: int | None = None
    value_omitted: int | None = None
    """The original value's size, when the letter left it out (`x-dlq-value-omitted`)."""
    value_sha256: str | None = None
    headers_omitted: bool = False
    key_omitted: bool = False

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(name, value) for name, value in self.headers if not name.startswith(DLQ_PREFIX)]

    @property
    def omitted(self) -> list[str]:
        """What of the original this letter left out: value, headers, key (empty: it is whole)."""
        parts = {"value": self.value_omitted is not None, "headers": self.headers_omitted, "key": self.key_omitted}
        return [part for part, left_out in parts.items() if left_out]

    @property
    def original_at(self) -> str:
        """Where the original was read from: `topic[partition]@offset`."""
        return f"{self.original_topic}[{self.original_partition}]@{self.original_offset}"


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


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
        original_partition=_number(found.get("x-dlq-original-partition")),
        original_offset=_number(found.get("x-dlq-original-offset")),
        value_omitted=_number(found.get("x-dlq-value-omitted")),
        value_sha256=found.get("x-dlq-value-sha256"),
        headers_omitted="x-dlq-headers-omitted" in found,
        key_omitted="x-dlq-key-omitted" in found,
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


async def fetch_original(
    settings: CommonSettings, letter: DeadLetter
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The key, value and headers of a dead letter's original, read from its source topic at its offset.

    Raises :class:`OriginalUnavailable` when it is no longer there: the partition is gone, the offset is
    below the start (retention, deleted records) or at or past the end (the topic was recreated), the
    offset has no record (compaction), or the record there is another one (its value's digest differs).
    """
    topic, partition, offset = letter.original_topic, letter.original_partition, letter.original_offset
    if not topic or partition is None or offset is None:
        raise ValueError(
            f"dead letter {letter.partition}@{letter.offset} left out its {', '.join(letter.omitted)} but does not "
            "say where its original is (x-dlq-original-topic, -partition, -offset)"
        )

    def gone(why: str) -> OriginalUnavailable:
        return OriginalUnavailable(
            f"dead letter {letter.partition}@{letter.offset} left out the original's {', '.join(letter.omitted)}, and "
            f"the original at {letter.original_at} is no longer there ({why}): it cannot be replayed"
        )

    if partition not in await _partitions(settings, topic):
        raise gone("no such topic partition")
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, client_id="proposalflow-dlq-original", **kafka_client_options(settings)
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if offset < first:
            raise gone(f"the partition now starts at offset {first}: retention or deletion took it")
        if offset >= end:
            raise gone(f"the partition now ends at offset {end}: was the topic recreated?")
        consumer.seek(tp, offset)
        deadline = asyncio.get_running_loop().time() + FETCH_ORIGINAL_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            records = (await consumer.getmany(tp, timeout_ms=1000, max_records=1)).get(tp, [])
            if not records:
                continue
            [record] = records
            if record.offset != offset:
                raise gone(f"offset {offset} holds no record now (compaction?); the next is {record.offset}")
            if letter.value_sha256 and hashlib.sha256(record.value or b"").hexdigest() != letter.value_sha256:
                raise gone("the record at that offset is another one: its value's SHA-256 differs")
            return record.key, record.value, list(record.headers or [])
        raise TimeoutError(f"reading {letter.original_at} took longer than {FETCH_ORIGINAL_TIMEOUT_S:.0f}s")
    finally:
        await consumer.stop()


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
    """Send the service's dead letters back to their original topics; returns how many were sent.

    A letter that left out part of its original sends the original, fetched from its source topic
    (:func:`fetch_original`); if it is gone, :class:`OriginalUnavailable` stops the replay at that letter.
    """
    publisher = KafkaPublisher(settings, client_id=f"proposalflow-dlq-replay-{service}")
    await publisher.start()

    async def send(letter: DeadLetter) -> None:
        if not letter.original_topic:
            raise ValueError(f"dead letter at offset {letter.offset} has no x-dlq-original-topic header")
        if letter.omitted:
            key, value, headers = await fetch_original(settings, letter)
        else:
            key, value, headers = letter.key, letter.value, letter.original_headers
        await publisher.send_and_wait(letter.original_topic, value=value, key=key, headers=headers)

    try:
        return await _consume_to_end(settings, service, f"proposalflow-dlq-replay-{service}", send, limit)
    finally:
        await publisher.stop()


# Writing ------------------------------------------------------------------------------------------


DLQ_ERROR_BYTES = 4000
"""The most of the error (`x-dlq-error`, UTF-8) a dead letter carries."""

DLQ_TRIMMED_ERROR_BYTES = 500
"""The most of the error a dead letter that had to shrink carries: the exception's type and the start of
its message, which is what names the cause."""


@dataclass(frozen=True, slots=True)
class DeadLetterForm:
    """One way to write a dead letter: its key, value and headers, the `x-dlq-*` ones included."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        return record_size(self.key, self.value, self.headers)


def utf8_within(text: str, limit: int) -> bytes:
    """`text` in UTF-8, at most `limit` bytes, never cutting a character in two; a cut text ends in '…'."""
    data = text.encode()
    if len(data) <= limit:
        return data
    ellipsis = "…".encode()
    return data[: limit - len(ellipsis)].decode(errors="ignore").encode() + ellipsis


def dead_letter_forms(record: Record, error: str, facts: Sequence[tuple[str, bytes]]) -> Iterator[DeadLetterForm]:
    """The forms of one dead letter, largest first, each leaving out more of the original record:

    1. the record as it came, the error (`x-dlq-error`) up to :data:`DLQ_ERROR_BYTES`;
    2. the error trimmed to :data:`DLQ_TRIMMED_ERROR_BYTES`;
    3. the value left out: `x-dlq-value-omitted: <its size>`, `x-dlq-value-sha256: <hex digest>`;
    4. the original headers left out too: `x-dlq-headers-omitted: <how many>`;
    5. the key left out too: `x-dlq-key-omitted: <its size>`.

    Every form carries `facts`, the other `x-dlq-*` headers, among them the original's topic, partition
    and offset: what a form leaves out is still in the source topic there until its retention ends, and
    `proposalflow dlq replay` fetches it from there (checking the digest). The error is trimmed first
    because a letter that keeps its value can be replayed whatever the source's retention. A form that
    leaves nothing out is skipped (no value, no headers, no key). The last form holds nothing of the
    original but a trimmed error and the facts, well under the smallest `max_request_size` the settings
    allow, so one form always fits. The value becomes empty (null), not a placeholder: a placeholder
    under the original's `ce_*` headers would read as the event with other data.
    """
    key, value, headers = record.key, record.value, list(record.headers)
    yield DeadLetterForm(key, value, [*headers, ("x-dlq-error", utf8_within(error, DLQ_ERROR_BYTES)), *facts])
    trimmed = [("x-dlq-error", utf8_within(error, DLQ_TRIMMED_ERROR_BYTES)), *facts]
    yield DeadLetterForm(key, value, [*headers, *trimmed])
    if value is not None:
        trimmed += [
            ("x-dlq-value-omitted", str(len(value)).encode()),
            ("x-dlq-value-sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        yield DeadLetterForm(key, None, [*headers, *trimmed])
    if headers:
        trimmed.append(("x-dlq-headers-omitted", str(len(headers)).encode()))
        yield DeadLetterForm(key, None, trimmed)
    if key is not None:
        trimmed.append(("x-dlq-key-omitted", str(len(key)).encode()))
        yield DeadLetterForm(None, None, trimmed)


def left_out(form: DeadLetterForm) -> str:
    """What a dead letter's form left out, for a log line."""
    names = {
        "x-dlq-value-omitted": "value",
        "x-dlq-headers-omitted": "original headers",
        "x-dlq-key-omitted": "key",
    }
    left_out = [label for name, label in names.items() if any(header == name for header, _ in form.headers)]
    return "without its " + ", ".join(left_out) if left_out else "the error trimmed"
