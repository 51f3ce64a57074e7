"""Audit's consumer of every topic: each record read becomes one chained entry, a record that is
not even a CloudEvent included."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.audit import service
from services.audit.unit_of_work import SqlUnitOfWork
from shared.backoff import backoff_delay
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.failures import is_transient
from shared.processor import EventProcessor, Handler, Record


def occurrence_key(envelope: Envelope, record: Record) -> str:
    """An event is audited once per topic: a dead-lettered copy is a fact of its own."""
    return f"{record.topic}|{envelope.source}|{envelope.id}"


def invalid_record_key(record: Record) -> str:
    """A record without a CloudEvents id is known by its Kafka position."""
    return f"invalid|{record.topic}|{record.partition}|{record.offset}"


class Recorder:
    """The handler that appends every event to the chain, hashed with `key` when one is set.

    It works by the batch: `prepare` locks the chain head and reads the tips of the batch's proposals
    in two queries, each call links its entry, and `finish` inserts the batch's entries together and
    moves the head once. The processor calls `prepare` and `finish` in every transaction that calls
    the handler (it finds them on the handler), so no linked entry is left unwritten."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        await service.record_event(SqlUnitOfWork(conn, self._key, defer=True), envelope, record)

    async def prepare(self, conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        await SqlUnitOfWork(conn, self._key).expect([e.subject for e in envelopes if e.subject])

    async def finish(self, conn: AsyncConnection) -> None:
        await SqlUnitOfWork(conn, self._key).flush()


def recorder(key: bytes | None) -> Handler:
    """The audit handler (see :class:`Recorder`)."""
    return Recorder(key)


class AuditProcessor(EventProcessor):
    """The shared processor, except that a record that does not decode as a CloudEvent is recorded
    (type `invalid-record`) instead of dead-lettered: for the audit log it is something that happened.
    Only if even that cannot be stored does it go to `proposalflow.dlq.audit`, which audit never reads.
    """

    def __init__(self, *, key: bytes | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = key

    async def process(self, record: Record) -> str:
        try:
            from_kafka(record.value, record.headers)
        except EnvelopeError as exc:
            return await self._record_invalid(record, str(exc))
        return await super().process(record)

    async def _record_invalid(self, record: Record, error: str) -> str:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._engine.begin() as conn:
                    if not await self._first_time(conn, invalid_record_key(record)):
                        return "duplicate"
                    await service.record_invalid(SqlUnitOfWork(conn, self._key), record, error)
                return "handled"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - transient waits; anything else is dead-lettered
                if not is_transient(exc):
                    await self._dead_letter(record, exc, attempts=attempt)
                    return "dead-lettered"
                await asyncio.sleep(backoff_delay(attempt, self._base_delay, self._max_delay))
