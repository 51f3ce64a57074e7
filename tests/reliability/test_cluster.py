"""A three-broker cluster (replication factor 3, `min.insync.replicas=2`); one broker is killed
(`kill -9`) under load and stays down: no event the brokers acknowledged is lost, and the suite,
on the two brokers left, finishes every proposal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import harness, own_cluster
from tests.reliability.workload import TIMEOUT, settled

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(TIMEOUT)]


async def test_one_broker_of_three_killed_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    with own_cluster(tmp_path / "kafka") as cluster:
        async with harness(tmp_path, cluster.bootstrap, "sqlite", replication=3) as h:
            done = asyncio.Event()
            clerk = asyncio.create_task(h.workload.clerk())
            stream = asyncio.create_task(h.workload.stream(done))
            started = time.monotonic()
            try:
                await asyncio.sleep(5)
                # Node 1 is the first bootstrap address and, being the first voter, often the controller.
                await asyncio.to_thread(cluster, "kill-node", "1")
                await asyncio.sleep(15)
                done.set()
                await stream
                result = await settled(h.suite, h.workload.accepted, h.run)
            finally:
                done.set()
                stream.cancel()
                clerk.cancel()
            print(f"\nthree brokers, one killed under load; total {time.monotonic() - started:.0f}s: {result}")
            assert not result.problems, f"{result}\n{h.suite.log_tails()}"
