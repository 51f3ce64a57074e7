"""A processor wired to a FastStream batch subscriber: records in batches, offsets committed only after
every record of the batch has its outcome stored (shared/offsets.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from shared.events import inbound_topic_pattern
from shared.offsets import OffsetCommits, record_lag
from shared.processor import EventProcessor

MAX_BATCH = 200
"""Records handled in one transaction at most; also the most a consumer fetches at once."""

FETCH_MIN_BYTES_IN_WINDOW = 256 * 1024
"""With a batch window, what the broker gathers before it answers a fetch early: about a full batch."""


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
    `commit_interval` seconds (:class:`OffsetCommits`). `inbound` topics are read together with every
    outside system's own (`proposalflow.unit-reports.<system>`), by a pattern subscription that also finds
    a system's topic made later (at the consumer's next metadata refresh)."""
    commits = OffsetCommits(commit_interval)

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
        # With a window, the broker answers a fetch once it holds a full batch's bytes or the window has
        # passed; without, as soon as it has a record (and holds an idle fetch for up to 500 ms).
        fetch_min_bytes=FETCH_MIN_BYTES_IN_WINDOW if batch_window_ms > 0 else 1,
        fetch_max_wait_ms=batch_window_ms if batch_window_ms > 0 else 500,
        decoder=raw,
        title=f"{processor.consumer}:subscribe",
        description=description,
    )
    async def on_batch(msg: Any) -> None:
        records: Sequence[Any] = msg.raw_message
        if not isinstance(records, Sequence):
            records = [records]
        await processor.process_batch(records)
        consumer = getattr(msg, "consumer", None)
        if consumer is None or not records:  # FastStream's test client has no real consumer
            await msg.ack()
        else:
            await commits.stored(consumer, records)
        last: dict[tuple[str, int], Any] = {(record.topic, record.partition): record for record in records}
        for record in last.values():
            record_lag(group_id, getattr(msg, "consumer", None), record)
