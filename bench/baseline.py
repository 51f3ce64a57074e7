"""The baseline: a raw aiokafka chain with as many consume → produce hops as the pipeline has stages,
each hop its own process, no database, the pipeline's own message (a submission command) as payload.

Every hop reads a batch, produces each record to the next topic with the same settings as the
services' outbox relay (idempotent, `acks=all`), waits for the acknowledgements and then commits its
offsets: the order of work of the pipeline, minus everything ProposalFlow adds to it.

`python -m bench.baseline <bootstrap> <from-topic> <to-topic> <group>` runs one hop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

HOPS = 6
"""submitted, filed, assigned, progress, notified, audited: one hop per stage."""


def topic(run: str, n: int) -> str:
    return f"bench.baseline.{run}.{n}"


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def hop(bootstrap: str, source: str, sink: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            futures = [
                await producer.send(sink, value=record.value, key=record.key, headers=list(record.headers))
                for records in batches.values()
                for record in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


class Sink:
    """Reads the chain's last topic and notes when each message arrived (keyed by its Kafka key)."""

    def __init__(self, bootstrap: str, source: str) -> None:
        self.arrived: dict[bytes, float] = {}
        self._consumer = AIOKafkaConsumer(
            source, bootstrap_servers=bootstrap, group_id=f"sink-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
        )

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            self.arrived.setdefault(record.key, now)
        finally:
            await self._consumer.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(hop(*sys.argv[1:5]))
