"""A consumer's offsets: committed once the records before them have their outcomes stored
(:class:`OffsetCommits`), and the lag behind the end of each partition (`proposalflow_consumer_lag`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from shared.observability import METRICS

if TYPE_CHECKING:
    from shared.processor import Record

log = logging.getLogger("proposalflow.messaging")
"""Every part of the delivery plumbing logs under one name, as when it was one module."""


class OffsetCommits:
    """Commits a consumer's offsets once the records before them have their outcomes stored, at most
    every `interval` seconds (0: after every batch).

    Each commit names its offsets explicitly (the record after the last one stored, per partition),
    never the consumer's current position, which may already be past a batch still in its transaction.
    Committing less often than every batch saves a broker round trip per batch, which at a moderate
    rate (a record or two per batch) is most of what the broker does for a consumer
    (docs/performance.md). After a crash or a rebalance at most `interval` seconds of records are
    read again, and the inbox skips them."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def stored(self, consumer: Any, records: Sequence[Record]) -> None:
        """The outcomes of these records are committed in the database: their offsets may go."""
        for record in records:
            self._pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._consumer = consumer
        wait = self._interval - (time.monotonic() - self._last)
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_after(wait))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        self._last = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the records are re-read and skipped by the inbox
            # A rebalance took the partition: the next owner re-reads it and the inbox skips it.
            log.warning("offset commit failed (%s); the records will be re-read and skipped", exc)


async def measure_lag(group_id: str, consumer: Any) -> None:
    """Set `proposalflow_consumer_lag` for every partition assigned to `consumer`: end offset minus the
    group's committed offset. Unlike :func:`record_lag` this sees a consumer stuck on a record."""
    partitions = list(consumer.assignment())
    if not partitions:
        return
    ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        committed = await consumer.committed(partition)
        if committed is None:  # nothing committed yet: the group starts from the earliest offset
            committed = (await consumer.beginning_offsets([partition]))[partition]
        lag = max(0, ends[partition] - committed)
        METRICS.consumer_lag.labels(group_id, partition.topic, str(partition.partition)).set(lag)


def record_lag(group_id: str, consumer: Any, record: Any) -> None:
    """Set `proposalflow_consumer_lag` for the record's partition from the consumer's high watermark."""
    highwater = getattr(consumer, "highwater", None)
    if highwater is None:  # FastStream's test client has no real consumer
        return
    end = highwater(TopicPartition(record.topic, record.partition))
    if end is None:
        return
    METRICS.consumer_lag.labels(group_id, record.topic, str(record.partition)).set(max(0, end - record.offset - 1))
