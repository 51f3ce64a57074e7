"""`python -m bench.plumbing --postgres URL`: the delivery plumbing alone, on one database, no broker.

What every record costs before and after its handler: the processor's batch transaction (inbox, parked
look, commit, the after-commit look) and a relay turn (take the turn, read, publish to a stand-in
producer, mark), around a handler that stages one event. Batches of 1 record (a moderate rate) and of 5.
Prints CPU ms per record of this process and, on PostgreSQL, of the server (the postmaster listening on
the URL's port and its backends), and the wall time; run it twice from two checkouts to compare code
(docs/performance.md, "The third round"). Without `--postgres` it runs on a SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from bench.__main__ import _parent, _pids, postmaster_of
from bench.suite import cpu_seconds
from services.intake import store as intake_store
from shared.db import create_engine
from shared.envelope import Envelope, to_kafka
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from shared.processor import EventProcessor
from shared.relay import OutboxRelay

ACTOR = Actor(id="m-bench", role=Role.MEMBER)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class AcknowledgingProducer:
    """Stands in for the broker: every send is acknowledged at once."""

    max_request_size = 1_048_576

    async def send(self, topic: str, *, value: Any, key: Any, headers: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_and_wait(self, topic: str, *, value: Any, key: Any, headers: Any) -> None:
        return None


@asynccontextmanager
async def database(postgres: str | None) -> AsyncIterator[str]:
    if postgres is None:
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite+aiosqlite:///{directory}/plumbing.db"
        return
    import asyncpg  # type: ignore[import-untyped]

    url = make_url(postgres)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    name = f"pf_plumbing_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def server_cpu(postmaster: int | None) -> float:
    if postmaster is None:
        return 0.0
    return cpu_seconds(postmaster) + sum(cpu_seconds(pid) for pid in _pids() if _parent(pid) == postmaster)


def record(proposal: str, offset: int) -> Record:
    data = ProposalWithdrawn(proposal_id=proposal, actor=ACTOR, reason="撤回").model_dump(mode="json")
    envelope = Envelope(type=ProposalWithdrawn.TYPE, source="/bench/plumbing", subject=proposal, data=data)
    key, value, headers = to_kafka(envelope)
    return Record("bench.plumbing", 0, offset, key, value, headers)


async def main(args: argparse.Namespace) -> None:
    postmaster = postmaster_of(make_url(args.postgres).port or 5432) if args.postgres else None
    async with database(args.postgres) as url:
        await upgrade_async("intake", url)
        engine = create_engine(url)
        relay = OutboxRelay(engine, intake_store.metadata, AcknowledgingProducer(), service="intake")  # type: ignore[arg-type]

        async def handler(conn: Any, envelope: Envelope, _record: Any) -> None:
            event = ProposalWithdrawn(proposal_id=envelope.subject or "", actor=ACTOR, reason="撤回")
            await add_to_outbox(conn, intake_store.metadata, "intake", [event])

        processor = EventProcessor(
            service="intake",
            consumer="bench-plumbing",
            engine=engine,
            metadata=intake_store.metadata,
            handler=handler,
            producer=AcknowledgingProducer(),  # type: ignore[arg-type]
        )
        offsets = iter(range(10**9))
        for _ in range(20):  # warm-up: connections, prepared statements, caches
            await processor.process_batch([record(f"p-warm-{next(offsets)}", 0)])
            await relay.publish_once()
        for size in (1, 5):
            batches = args.records // size
            client, server, wall = time.process_time(), server_cpu(postmaster), time.perf_counter()
            for _ in range(batches):
                await processor.process_batch([record(f"p-{next(offsets)}", n) for n in range(size)])
                await relay.publish_once()
            count = batches * size
            print(
                f"batches of {size}: {1000 * (time.process_time() - client) / count:.2f} ms CPU per record here, "
                f"{1000 * (server_cpu(postmaster) - server) / count:.2f} in the server, "
                f"{1000 * (time.perf_counter() - wall) / count:.2f} ms wall",
                flush=True,
            )
        await engine.dispose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.plumbing", description=__doc__)
    parser.add_argument("--postgres", metavar="URL", help="a postgresql+asyncpg:// URL whose role may create databases")
    parser.add_argument("--records", type=int, default=300, help="records per batch size (default 300)")
    return parser.parse_args()


if __name__ == "__main__":
    os.environ.setdefault("PROPOSALFLOW_LOG_LEVEL", "WARNING")
    asyncio.run(main(parse()))
