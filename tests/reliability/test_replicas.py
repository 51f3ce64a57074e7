"""Two replicas of a service in one consumer group; one is killed (`kill -9`) under load and not
restarted: the other takes over its partitions, and nothing it had in hand is lost or doubled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import harness
from tests.reliability.workload import SIZE, SOAK, TIMEOUT, settled

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.timeout(TIMEOUT),
]


def assigned_topics(log: Path) -> str:
    """The partitions the replica was last given, as its consumer logged them."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "assigned to partitions" in line]
    return lines[-1] if lines else ""


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
            while not all(
                "proposalflow.proposals" in assigned_topics(h.suite.logs[replica]) for replica in (service, second)
            ):
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
        assert "proposalflow.proposals" in assigned_topics(h.suite.logs[service])
        assert not result.problems, f"{result}\n{h.suite.log_tails()}"
