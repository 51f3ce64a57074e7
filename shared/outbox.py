"""The transactional outbox (DESIGN.md §4): events staged in the transaction that changes a service's
state, and the rows the relay could never publish.

Writing: a service calls :func:`add_to_outbox` inside the transaction that changes its state; the
relay (`shared.relay.OutboxRelay`) publishes committed rows with an idempotent producer (`acks=all`) and
marks them sent. A broker outage delays events; it never loses them. An event too large to publish is
refused where it is staged (:class:`EventTooLarge`).

Failed rows: the relay marks a row failed (`outbox.failed_at`, `outbox.error`) when
the broker refuses it for good: larger than its topic's `max.message.bytes`, a topic the service may
not write, an invalid topic. The row stays in the outbox, unsent, and the rows behind it go on.
:func:`retry_failed_rows` clears the mark; the relay then sends the row with the rows waiting then, and
marks it failed again if the cause is still there (`proposalflow outbox retry`). Nothing here deletes a
row: an event the service committed is only ever published, late or not at all yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import insert_new
from shared.envelope import Envelope, encode_data, to_kafka_headers
from shared.errors import PermanentError
from shared.events import Event, source_of
from shared.observability import current_traceparent, note_provisional_deadlines
from shared.producer import DEFAULT_MAX_REQUEST_SIZE, record_size


class EventTooLarge(PermanentError):
    """An event whose Kafka record would be over the producer's `max_request_size`: the producer would
    refuse it, so :func:`add_to_outbox` refuses it before anything is stored (the caller's transaction
    rolls back). Over HTTP it is a 413 problem (shared/http.py); in a consumer's handler it dead-letters
    the record being handled, like any :class:`PermanentError`."""

    def __init__(self, event_type: str, proposal_id: str | None, size: int, limit: int) -> None:
        self.event_type = event_type
        self.proposal_id = proposal_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {event_type} of proposal {proposal_id} would be a Kafka record of {size} bytes, over the "
            f"{limit} bytes the producer sends (PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE)"
        )


def envelope_for(
    event: Event,
    service: str,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> Envelope:
    """The CloudEvent that carries one event of this service."""
    extensions: dict[str, str] = {}
    if event.correlation_id:
        extensions["correlationid"] = event.correlation_id
    if traceparent:
        extensions["traceparent"] = traceparent
    kwargs: dict[str, Any] = {}
    if event_id is not None:
        kwargs["id"] = event_id
    if time is not None:
        kwargs["time"] = time
    return Envelope(
        type=event.TYPE,
        source=source_of(service),
        subject=event.proposal_id,
        data=event.model_dump(mode="json"),
        extensions=extensions,
        **kwargs,
    )


def _outbox(metadata: MetaData) -> Table:
    return metadata.tables["outbox"]


_RECORD_LIMIT = "proposalflow_max_record_bytes"
"""Where an outbox table keeps the size budget of the producer that publishes it (`Table.info`)."""


def limit_outbox_records(metadata: MetaData, max_bytes: int) -> None:
    """Make :func:`add_to_outbox` refuse events over `max_bytes` on this metadata's outbox: the
    `max_request_size` of the producer that publishes it. :class:`OutboxRelay` calls it with its
    producer's, so a service's HTTP door and handlers measure against the limit their relay meets."""
    _outbox(metadata).info[_RECORD_LIMIT] = max_bytes


def outbox_record_limit(metadata: MetaData) -> int:
    """The largest record this metadata's outbox accepts (see :func:`limit_outbox_records`); without a
    relay in the process, the default `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE`."""
    return int(_outbox(metadata).info.get(_RECORD_LIMIT, DEFAULT_MAX_REQUEST_SIZE))


async def add_to_outbox(
    conn: AsyncConnection,
    metadata: MetaData,
    service: str,
    events: Iterable[Event | tuple[Event, str]],
    *,
    traceparent: str | None = None,
    topic: str | None = None,
) -> list[Envelope]:
    """Stage events in the outbox, in the caller's transaction. A `(event, id)` pair fixes the id
    (scheduled events use deterministic ids, so two replicas that both fire make one event).
    `topic` overrides the events' own topic (tests on isolated topics).

    Each event is measured as the producer will measure its record (key, value and headers, in a batch
    of its own: :func:`record_size`) against :func:`outbox_record_limit`; one over it raises
    :class:`EventTooLarge` before anything is written. Stored, it would be refused at every attempt to
    publish it: before this check, such a row held back every row behind it for ever. The relay sends a
    row as it is stored (a new `traceparent` has the same length), so what passes here passes the
    producer; a topic whose own `max.message.bytes` is lower is the relay's to meet (failed rows)."""
    envelopes: list[Envelope] = []
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    traceparent = traceparent or current_traceparent()
    limit = outbox_record_limit(metadata)
    for item in events:
        event, event_id = item if isinstance(item, tuple) else (item, None)
        envelope = envelope_for(event, service, event_id=event_id, time=now, traceparent=traceparent)
        headers = to_kafka_headers(envelope)
        payload = encode_data(envelope.data)
        key = envelope.subject.encode() if envelope.subject is not None else None
        size = record_size(key, payload, headers)
        if size > limit:
            raise EventTooLarge(envelope.type, envelope.subject, size, limit)
        note_provisional_deadlines(service, event)
        envelopes.append(envelope)
        rows.append(
            {
                "event_id": envelope.id,
                "topic": topic or event.TOPIC,
                "key": envelope.subject,
                "type": envelope.type,
                "headers": json.dumps([(k, v.decode()) for k, v in headers]),
                "payload": payload,
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(insert_new(_outbox(metadata), conn.dialect.name, "event_id"), rows)
        conn.info[STAGED] = True
    return envelopes


STAGED = "proposalflow_outbox_staged"
"""Set in a connection's `info` by :func:`add_to_outbox`; :func:`staged_events` takes it."""


def staged_events(conn: AsyncConnection) -> bool:
    """Whether the transaction on `conn` staged outbox rows since the last look (and forget it): after a
    commit that staged nothing, the relay need not look for rows. `info` outlives the transaction (it
    is the pooled connection's): a mark left by a transaction that rolled back wakes the relay once for
    nothing, never the other way round."""
    return bool(conn.info.pop(STAGED, False))


# Failed rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRow:
    """One failed outbox row, as an operator reads it."""

    id: int
    event_id: str
    type: str
    topic: str
    key: str | None
    """The proposal id (the record's key)."""
    value_bytes: int
    created_at: datetime
    failed_at: datetime
    error: str


async def failed_rows(engine: AsyncEngine, metadata: MetaData, limit: int = 100) -> list[FailedRow]:
    """The outbox's failed rows, oldest first."""
    table = metadata.tables["outbox"]
    query = (
        select(
            table.c.id,
            table.c.event_id,
            table.c.type,
            table.c.topic,
            table.c.key,
            func.length(table.c.payload).label("value_bytes"),
            table.c.created_at,
            table.c.failed_at,
            table.c.error,
        )
        .where(table.c.sent_at.is_(None))
        .where(table.c.failed_at.is_not(None))
        .order_by(table.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        FailedRow(
            id=int(row.id),
            event_id=row.event_id,
            type=row.type,
            topic=row.topic,
            key=row.key,
            value_bytes=int(row.value_bytes),
            created_at=row.created_at,
            failed_at=row.failed_at,
            error=row.error or "",
        )
        for row in rows
    ]


async def retry_failed_rows(engine: AsyncEngine, metadata: MetaData, row_id: int | None = None) -> int:
    """Clear the failed mark of one row (`row_id`) or of every failed row; returns how many. The relay
    sends them with its next batch, in id order among the rows waiting then."""
    table = metadata.tables["outbox"]
    statement = (
        update(table)
        .where(table.c.sent_at.is_(None))
        .where(table.c.failed_at.is_not(None))
        .values(failed_at=None, error=None)
    )
    if row_id is not None:
        statement = statement.where(table.c.id == row_id)
    async with engine.begin() as conn:
        result = await conn.execute(statement)
    return int(result.rowcount)
