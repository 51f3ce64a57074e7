"""`kill -9` of each service in turn, mid-stream, then a restart: nothing is lost, nothing doubled.

A killed process gets no chance to finish anything: an HTTP request half-answered, a transaction
half-written, an offset not yet committed, an outbox row published but not yet marked sent. The
guarantees (DESIGN.md §4) say all of these are recovered: the client retries with its Idempotency-Key,
the database rolls back, the record is re-read and the inbox skips what was already stored, the
relay publishes again and the idempotent consumers drop the copy.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.settings import SERVICES
from tests.reliability.conftest import harness
from tests.reliability.workload import BACKENDS, SIZE, TIMEOUT, settled

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(TIMEOUT)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_of_each_service_in_turn_loses_and_doubles_nothing(
    backend: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with harness(tmp_path, kafka_bootstrap, backend) as h:
        done = asyncio.Event()
        clerk = asyncio.create_task(h.workload.clerk())
        stream = asyncio.create_task(h.workload.stream(done))
        started = time.monotonic()
        killed = []
        try:
            for _round in range(SIZE.rounds):
                for service in SERVICES:
                    # Let work pile up in every stage, then kill this service in the middle of it.
                    await asyncio.sleep(2 if SIZE.rounds == 1 else 3)
                    h.suite.kill(service)
                    killed.append(service)
                    await asyncio.sleep(1)
                    await h.suite.restart(service)
            done.set()
            await stream
            result = await settled(h.suite, h.workload.accepted, h.run)
        finally:
            done.set()
            stream.cancel()
            clerk.cancel()
        print(f"\nkill -9 ({backend}) of {', '.join(killed)} in {time.monotonic() - started:.0f}s: {result}")
        assert not result.problems, f"{result}\n{h.suite.log_tails()}"
        assert result.accepted >= SIZE.minimum
