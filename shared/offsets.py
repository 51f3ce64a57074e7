"""A consumer's offsets: committed once the records before them have their outcomes stored
(:class:`OffsetCommits`), and the lag behind the end of each partition (`proposalflow_consumer_lag`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

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
    (docs/performance.md). After a crash at most `interval` seconds of records are read again, and the
    inbox skips them; before a rebalance what is stored is committed at once (:class:`HandOver`)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Around a batch's processing: a rebalance waits for it (:meth:`handed_over`) before it commits."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def handed_over(self, within: float) -> None:
        """The partitions are being taken away: wait (at most `within` seconds) for the batch in progress
        to store its outcomes, then commit every stored offset now, so the next owner starts after them
        instead of reading them again."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            log.warning("a batch still in progress after %.0fs of a rebalance: its records will be re-read", within)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()

    def note(self, consumer: Any, records: Sequence[Record]) -> None:
        """The outcomes of these records are committed in the database: their offsets may go (later)."""
        for record in records:
            self._pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._consumer = consumer

    async def stored(self, consumer: Any, records: Sequence[Record]) -> None:
        """The outcomes of these records are committed in the database: their offsets go now, or at the end
        of the interval."""
        self.note(consumer, records)
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


class HandOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """A consumer's rebalance listener: before its partitions go to another member (a replica starting or
    stopping), the batch in progress finishes and the stored offsets are committed (aiokafka waits for
    this callback before it rejoins the group), so the next owner does not read those records again. Also
    counts the rebalances (`proposalflow_consumer_rebalances_total`)."""

    def __init__(self, commits: OffsetCommits, group_id: str, consumer: str, *, timeout: float = 20.0) -> None:
        self._commits = commits
        self._group_id = group_id
        self._consumer = consumer
        self._timeout = timeout

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self._commits.handed_over(self._timeout)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        METRICS.consumer_rebalances.labels(self._group_id, self._consumer).inc()


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
