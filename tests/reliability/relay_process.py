"""One outbox relay as a process of its own, for `test_relay_order.py`: intake's outbox on the database
given, published to the real broker, until it is killed.

`--stall-after N` makes it a relay that dies in the middle of a batch: once the broker has acknowledged
N records, every later acknowledgement is held back for ever, so the batch in hand is published (in part
or whole) but never marked sent, and the relay keeps its turn until it is killed. It writes
`--marker` then, so the test knows when to `kill -9` it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from services.intake import store as intake_store
from shared.db import create_engine
from shared.producer import KafkaPublisher
from shared.relay import OutboxRelay
from shared.settings import CommonSettings


class StallingPublisher(KafkaPublisher):
    """A publisher whose acknowledgements stop reaching the relay after `stall_after` of them: the records
    are on the broker, the relay never learns it, so it never marks them sent."""

    def __init__(self, settings: CommonSettings, *, stall_after: int, marker: Path) -> None:
        super().__init__(settings, client_id="relay-order-test")
        self._stall_after = stall_after
        self._marker = marker
        self._acknowledged = 0

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        acknowledged = await super().send(topic, value=value, key=key, headers=headers)
        held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def relay_it(done: asyncio.Future[Any]) -> None:
            self._acknowledged += 1
            if self._acknowledged <= self._stall_after:
                if done.exception() is not None:
                    held.set_exception(done.exception())  # type: ignore[arg-type]
                else:
                    held.set_result(done.result())
            elif not self._marker.exists():
                self._marker.write_text(str(self._acknowledged))

        acknowledged.add_done_callback(relay_it)
        return held


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = CommonSettings(kafka_bootstrap_servers=args.bootstrap)
    if args.stall_after:
        publisher: KafkaPublisher = StallingPublisher(settings, stall_after=args.stall_after, marker=args.marker)
    else:
        publisher = KafkaPublisher(settings, client_id="relay-order-test")
    engine = create_engine(args.database_url)
    await publisher.start()
    relay = OutboxRelay(
        engine, intake_store.metadata, publisher, batch_size=args.batch_size, poll_interval=0.05, service="intake"
    )
    print("relay running", flush=True)
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main())
