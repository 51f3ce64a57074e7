"""Audit's consumer of every topic: each record read becomes one chained entry, a record that is
not even a CloudEvent included."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.audit import service
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.messaging import EventProcessor, Handler, Record, backoff_delay, is_transient


def occurrence_key(envelope: Envelope, record: Record) -> str:
    """An event is audited once per topic: a dead-lettered copy is a fact of its own."""
    return f"{record.topic}|{envelope.source}|{envelope.id}"


def invalid_record_key(record: Record) -> str:
    """A record without a CloudEvents id is known by its Kafka position."""
    return f"invalid|{record.topic}|{record.partition}|{record.offset}"


def recorder(key: bytes | None) -> Handler:
    """The handler that appends every event to the chain, hashed with `key` when one is set."""

    async def on_any_event(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        await service.record_event(conn, envelope, record, key)

    return on_any_event


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
                    await service.record_invalid(conn, record, error, self._key)
                return "handled"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - transient waits; anything else is dead-lettered
                if not is_transient(exc):
                    await self._dead_letter(record, exc, attempts=attempt)
                    return "dead-lettered"
                await asyncio.sleep(backoff_delay(attempt, self._base_delay, self._max_delay))
