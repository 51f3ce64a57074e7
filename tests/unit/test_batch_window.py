"""The batch window: audit, which ends the pipeline, gathers records for a short while into larger
batches; the services others wait for answer every record at once, except on PostgreSQL notify and
progress, which read the most records (a batch's fixed statements are round trips there). Configurable
per service."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.observability import METRICS
from shared.settings import service_settings
from shared.subscriber import IDLE_FETCH_WAIT_MS, MAX_BATCH, subscribe, top_up


class Processor:
    consumer = "test"


def fetch_options(window_ms: int) -> dict[str, int]:
    broker = KafkaBroker()
    subscribe(broker, Processor(), ["t"], group_id="g", description="d", batch_window_ms=window_ms)  # type: ignore[arg-type]
    (subscriber,) = broker.subscribers
    options = subscriber._connection_args  # type: ignore[attr-defined]
    return {"fetch_min_bytes": options["fetch_min_bytes"], "fetch_max_wait_ms": options["fetch_max_wait_ms"]}


def test_audit_waits_a_little_for_fuller_batches_and_the_others_do_not() -> None:
    assert service_settings("audit").batch_window_ms == 25
    assert {service_settings(s).batch_window_ms for s in ("intake", "assignment", "progress", "notify")} == {0}


def test_on_postgresql_notify_and_progress_wait_a_little_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in ("intake", "assignment", "progress", "notify", "audit"):
        monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", f"postgresql+asyncpg://pf@db/{service}")
    windows = {service: service_settings(service).batch_window_ms for service in ("intake", "assignment")}
    assert windows == {"intake": 0, "assignment": 0}
    assert service_settings("notify").batch_window_ms == 10
    assert service_settings("progress").batch_window_ms == 10
    assert service_settings("audit").batch_window_ms == 25
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_BATCH_WINDOW_MS", "0")
    assert service_settings("progress").batch_window_ms == 0


def test_the_window_is_set_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_BATCH_WINDOW_MS", "0")
    monkeypatch.setenv("PROPOSALFLOW_NOTIFY_BATCH_WINDOW_MS", "10")
    assert service_settings("audit").batch_window_ms == 0
    assert service_settings("notify").batch_window_ms == 10


def test_the_broker_holds_an_idle_fetch_whatever_the_window() -> None:
    # A fetch is answered as soon as one record is there, and an idle one waits up to 500 ms: a window kept
    # by the broker (fetch_max_wait_ms) made every idle consumer fetch a hundred times a second.
    assert fetch_options(25) == {"fetch_min_bytes": 1, "fetch_max_wait_ms": IDLE_FETCH_WAIT_MS}
    assert fetch_options(0) == {"fetch_min_bytes": 1, "fetch_max_wait_ms": IDLE_FETCH_WAIT_MS}


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int


class Fetched:
    """A consumer whose fetcher holds `later` once the window has passed."""

    def __init__(self, later: dict[str, list[Rec]]) -> None:
        self.later = later
        self.asked: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[Rec]]:
        self.asked.append(max_records)
        later, self.later = self.later, {}
        return later


async def test_a_batch_takes_what_arrived_within_the_window_after_its_own_records() -> None:
    first = [Rec("t", 0, 1), Rec("t", 1, 7)]
    consumer = Fetched({"t-0": [Rec("t", 0, 2), Rec("t", 0, 3)], "t-1": [Rec("t", 1, 8)]})
    batch = await top_up(consumer, first, 10)
    assert batch == [*first, Rec("t", 0, 2), Rec("t", 0, 3), Rec("t", 1, 8)]
    assert consumer.asked == [MAX_BATCH - 2]
    # Within each partition the offsets still rise: the order a proposal's records are handled in.
    for partition in (0, 1):
        offsets = [r.offset for r in batch if r.partition == partition]
        assert offsets == sorted(offsets)


async def test_a_full_batch_or_nothing_new_is_left_as_it_is() -> None:
    full = [Rec("t", 0, n) for n in range(MAX_BATCH)]
    consumer = Fetched({"t-0": [Rec("t", 0, MAX_BATCH)]})
    assert await top_up(consumer, full, 10) == full
    assert consumer.asked == []
    quiet = Fetched({})
    assert await top_up(quiet, [Rec("t", 0, 1)], 10) == [Rec("t", 0, 1)]


class CountingProcessor:
    consumer = "test-batches"

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def process_batch(self, records: list[object]) -> list[str]:
        self.batches.append(len(records))
        return ["handled"] * len(records)


async def test_an_operator_sees_how_many_batches_a_consumer_handled() -> None:
    # Records per batch (consumed / batches) is what tells an operator whether a batch's fixed cost is
    # shared: one record per batch at a moderate rate, many under load.
    broker = KafkaBroker()
    processor = CountingProcessor()
    subscribe(broker, processor, ["t-batches"], group_id="g", description="d")  # type: ignore[arg-type]
    batches = METRICS.consumer_batches.labels("test-batches")
    before = batches._value.get()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b"one", b"two", topic="t-batches")
    assert sum(processor.batches) == 2
    assert batches._value.get() == before + len(processor.batches)
