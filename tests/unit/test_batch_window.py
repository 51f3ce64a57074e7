"""The batch window: audit, which ends the pipeline, gathers records for a short while into larger
batches; the services others wait for answer every record at once, except on PostgreSQL notify and
progress, which read the most records (a batch's fixed statements are round trips there). Configurable
per service."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker

from shared.settings import service_settings
from shared.subscriber import FETCH_MIN_BYTES_IN_WINDOW, subscribe


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


def test_a_window_makes_the_broker_gather_records_before_it_answers() -> None:
    assert fetch_options(25) == {"fetch_min_bytes": FETCH_MIN_BYTES_IN_WINDOW, "fetch_max_wait_ms": 25}
    # Without one, a fetch is answered as soon as one record is there (an idle one waits up to 500 ms).
    assert fetch_options(0) == {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}
