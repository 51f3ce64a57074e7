"""A processor wired to a FastStream batch subscriber: records in batches, offsets committed only after
every record of the batch has its outcome stored (shared/offsets.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from shared.events import inbound_topic_pattern
from shared.observability import METRICS
from shared.offsets import HandOver, OffsetCommits, record_lag
from shared.processor import EventProcessor

MAX_BATCH = 200
"""Records handled in one transaction at most; also the most a consumer fetches at once."""

IDLE_FETCH_WAIT_MS = 500
"""How long the broker holds a fetch that finds no records (aiokafka's default)."""


def subscribe(
    broker: KafkaBroker,
    processor: EventProcessor,
    topics: Sequence[str],
    *,
    group_id: str,
    description: str,
    commit_interval: float = 0.0,
    batch_window_ms: int = 0,
    inbound: Sequence[str] = (),
) -> None:
    """Wire a processor to a FastStream batch subscriber; offsets are committed (manual
    acknowledgement) only after every record of the batch has its outcome stored, at most every
    `commit_interval` seconds (:class:`OffsetCommits`), and before a rebalance takes its partitions
    (:class:`HandOver`). With a `batch_window_ms`, a batch that is not full waits that long for the records
    that arrive meanwhile and takes them too (:func:`top_up`). `inbound` topics are read together with every
    outside system's own (`proposalflow.unit-reports.<system>`), by a pattern subscription that also finds
    a system's topic made later (at the consumer's next metadata refresh)."""
    commits = OffsetCommits(commit_interval)
    listener = HandOver(commits, group_id, processor.consumer)

    async def raw(message: Any) -> Any:
        # The handler gets the message itself as its body. Both are coroutines and the handler takes no
        # injected `KafkaMessage`: FastStream runs a plain-function decoder, and the injection of the
        # message, in a worker thread, a thread hop per batch (docs/performance.md).
        return message

    @broker.subscriber(
        *([] if inbound else topics),
        pattern=inbound_topic_pattern(topics, inbound) if inbound else None,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        batch=True,
        max_records=MAX_BATCH,
        # The broker answers a fetch as soon as it has a record, and holds an idle one for up to 500 ms. The
        # window is kept here, not by the broker (fetch_max_wait_ms): a broker-side window answers every idle
        # fetch after the window, a hundred fetches a second per consumer at 10 ms, whether records come or
        # not, in every replica (docs/performance.md, "Replicas").
        fetch_min_bytes=1,
        fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
        listener=listener,
        decoder=raw,
        title=f"{processor.consumer}:subscribe",
        description=description,
    )
    async def on_batch(msg: Any) -> None:
        records: Sequence[Any] = msg.raw_message
        if not isinstance(records, Sequence):
            records = [records]
        consumer = getattr(msg, "consumer", None)
        async with commits.batch():
            if batch_window_ms > 0 and hasattr(consumer, "getmany"):
                records = await top_up(consumer, records, batch_window_ms)
            await processor.process_batch(records)
            if records:
                METRICS.consumer_batches.labels(processor.consumer).inc()
            if consumer is not None and records:
                commits.note(consumer, records)
        if consumer is None or not records:  # FastStream's test client has no real consumer
            await msg.ack()
        else:
            await commits.stored(consumer, ())
        last: dict[tuple[str, int], Any] = {(record.topic, record.partition): record for record in records}
        for record in last.values():
            record_lag(group_id, getattr(msg, "consumer", None), record)


async def top_up(consumer: Any, records: Sequence[Any], window_ms: int) -> Sequence[Any]:
    """The batch window: a batch that is not full waits `window_ms`, then takes the records the consumer
    fetched meanwhile (up to :data:`MAX_BATCH`), so that at a moderate rate a batch holds several records and
    its fixed costs (a transaction, the inbox, a relay turn) are shared. Within a partition, the records
    taken come after the batch's, in order. Costs nothing while no records come."""
    if not records or len(records) >= MAX_BATCH:
        return records
    await asyncio.sleep(window_ms / 1000)
    more = await consumer.getmany(timeout_ms=0, max_records=MAX_BATCH - len(records))
    if not more:
        return records
    return [*records, *(record for partition in more.values() for record in partition)]
