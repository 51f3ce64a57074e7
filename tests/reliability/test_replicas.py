"""Two replicas of a service in one consumer group; one is killed (`kill -9`) under load and not
restarted: the other takes over its partitions, and nothing it had in hand is lost or doubled."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from shared.events import PROPOSALS
from tests.reliability.conftest import harness
from tests.reliability.workload import SIZE, SOAK, TIMEOUT, settled

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.timeout(TIMEOUT),
]


def holds(log: Path, topic: str) -> bool:
    """Whether the replica holds a partition of `topic` now: the last assignment each of its consumers
    logged (a service may run several consumers in its group) names the topic."""
    latest: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r"Consumer (\S+) assigned to partitions: (.*)", line)
        if found:
            latest[found.group(1)] = found.group(2)
    return any(f"topic='{topic}'" in assignment for assignment in latest.values())


@pytest.mark.parametrize("service", ["progress", "notify"] if SOAK else ["progress"])
async def test_the_surviving_replica_takes_over_the_partitions_of_a_killed_one(
    service: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    second = f"{service}#2"
    async with harness(tmp_path, kafka_bootstrap, "postgres", replicas={service: 2}) as h:
        done = asyncio.Event()
        clerk = asyncio.create_task(h.workload.clerk())
        stream = asyncio.create_task(h.workload.stream(done))
        started = time.monotonic()
        try:
            deadline = time.monotonic() + 60
            # Both replicas hold a share of the proposals topic before one of them dies.
            while not all(holds(h.suite.logs[replica], PROPOSALS) for replica in (service, second)):
                assert time.monotonic() < deadline, f"the group never split the partitions\n{h.suite.log_tails()}"
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)
            h.suite.kill(second)
            # The group notices when the session times out, then hands the partitions over.
            await asyncio.sleep(max(15.0, SIZE.outage))
            done.set()
            await stream
            result = await settled(h.suite, h.workload.accepted, h.run)
        finally:
            done.set()
            stream.cancel()
            clerk.cancel()
        print(f"\n{service}: one of two replicas killed; total {time.monotonic() - started:.0f}s: {result}")
        assert holds(h.suite.logs[service], PROPOSALS), "the surviving replica should hold the proposals topic"
        assert not result.problems, f"{result}\n{h.suite.log_tails()}"
