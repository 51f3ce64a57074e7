"""Offsets are committed only for records whose outcomes are stored, and at most every interval
(shared/offsets.py `OffsetCommits`): fewer broker round trips, never a record skipped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from shared.observability import METRICS
from shared.offsets import HandOver, OffsetCommits


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Consumer:
    """Records what was committed; `commit()` without offsets would be a bug (it commits the position)."""

    def __init__(self, fail: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: Any = None) -> None:
        assert offsets is not None, "commit() without offsets commits the position, maybe past a stored record"
        if self.fail:
            raise CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))


async def test_every_batch_is_committed_at_once_without_an_interval() -> None:
    commits, consumer = OffsetCommits(0), Consumer()
    await commits.stored(consumer, [Rec("t", 0, 5), Rec("t", 1, 9), Rec("t", 0, 6)])
    await commits.stored(consumer, [Rec("t", 0, 7)])
    assert consumer.commits == [{TopicPartition("t", 0): 7, TopicPartition("t", 1): 10}, {TopicPartition("t", 0): 8}]


async def test_within_the_interval_batches_are_committed_together_and_none_is_left_behind() -> None:
    commits, consumer = OffsetCommits(0.2), Consumer()
    await commits.stored(consumer, [Rec("t", 0, 1)])  # the first commits at once
    await commits.stored(consumer, [Rec("t", 0, 2)])
    await commits.stored(consumer, [Rec("t", 1, 4), Rec("t", 0, 3)])
    assert consumer.commits == [{TopicPartition("t", 0): 2}]
    await asyncio.sleep(0.3)  # nothing more arrives: the rest is committed when the interval is over
    assert consumer.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 4, TopicPartition("t", 1): 5}]


async def test_a_failed_commit_is_logged_not_raised(caplog: Any) -> None:
    commits = OffsetCommits(0)
    await commits.stored(Consumer(fail=True), [Rec("t", 0, 1)])
    assert "offset commit failed" in caplog.text


async def test_a_rebalance_waits_for_the_batch_in_progress_and_commits_its_offsets_at_once() -> None:
    """Before a replica's partitions go to another (a replica starting or stopping), what it has stored is
    committed, so the next owner does not read it again; the interval does not hold it back."""
    commits, consumer = OffsetCommits(60), Consumer()
    await commits.stored(consumer, [Rec("t", 0, 1)])  # the first commits at once, the interval starts
    stored = asyncio.Event()

    async def batch() -> None:
        async with commits.batch():
            await stored.wait()  # the batch's transaction
            commits.note(consumer, [Rec("t", 0, 2), Rec("t", 1, 4)])

    running = asyncio.create_task(batch())
    await asyncio.sleep(0)
    revoked = asyncio.create_task(HandOver(commits, "g", "c").on_partitions_revoked({TopicPartition("t", 0)}))
    await asyncio.sleep(0.05)
    assert not revoked.done(), "the rebalance must wait for the batch in progress"
    stored.set()
    await asyncio.wait_for(revoked, 1)
    await running
    assert consumer.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 3, TopicPartition("t", 1): 5}]


async def test_a_batch_that_outlasts_the_rebalance_is_left_to_the_inbox(caplog: Any) -> None:
    commits, consumer = OffsetCommits(0), Consumer()
    await commits.stored(consumer, [Rec("t", 0, 1)])

    async def stuck() -> None:
        async with commits.batch():
            await asyncio.sleep(10)

    running = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    await HandOver(commits, "g", "c", timeout=0.05).on_partitions_revoked({TopicPartition("t", 0)})
    assert "re-read" in caplog.text
    running.cancel()
    assert consumer.commits == [{TopicPartition("t", 0): 2}]


async def test_every_assignment_is_counted() -> None:
    before = METRICS.consumer_rebalances.labels("g-count", "c")._value.get()
    await HandOver(OffsetCommits(0), "g-count", "c").on_partitions_assigned({TopicPartition("t", 0)})
    assert METRICS.consumer_rebalances.labels("g-count", "c")._value.get() == before + 1
