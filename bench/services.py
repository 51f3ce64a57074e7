"""`python -m bench.services --postgres URL`: the consumers of notify and progress alone, no broker.

Each proposal of the run walks the lifecycle of tests/notify_fixtures.py (submitted, co-signing, filed,
assigned, disputed, deadlines, reply, evaluation, rehandling, closed: the events of several proposals);
the events go through each service's own processor and handler (prepare and finish included) in batches
that take the next event of `--batch` proposals at a time, as a consumer's batch across partitions does. Prints,
per record: CPU ms of this process, CPU ms of the PostgreSQL server (the postmaster on the URL's port and
its backends), the statements sent through SQLAlchemy (the plumbing's own, on the driver's connection,
are not counted), and the wall time. Without `--postgres` it runs on a SQLite file. Run it from two
checkouts to compare code (docs/performance.md, "The fourth round").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench.__main__ import postmaster_of
from bench.plumbing import AcknowledgingProducer, Record, database, server_cpu
from services.notify import handlers as notify_handlers
from services.notify import store as notify_store
from services.notify.rules import load_rules
from services.notify.service import Notifier
from services.notify.settings import NotifySettings
from services.progress import handlers as progress_handlers
from services.progress import store as progress_store
from services.progress.unit_of_work import deferring_writes, write_deferred
from shared.db import create_engine
from shared.envelope import Envelope, to_kafka
from shared.events import ASSIGNMENTS, PROPOSALS, Event
from shared.migrate import upgrade_async
from shared.processor import EventProcessor
from tests.notify_fixtures import lifecycle


def records(proposals: int, batch: int, topics: tuple[str, ...] | None) -> list[list[Record]]:
    """The batches: round n takes the n-th event of each of `batch` proposals' lifecycles."""
    walks = [
        [event for event, _ in lifecycle(f"b{n}") if topics is None or event.TOPIC in topics] for n in range(proposals)
    ]
    offsets = iter(range(10**9))
    batches: list[list[Record]] = []
    for first in range(0, proposals, batch):
        group = walks[first : first + batch]
        for step in range(max(len(walk) for walk in group)):
            chosen: list[Event] = [walk[step] for walk in group if step < len(walk)]
            batches.append([_record(event, next(offsets)) for event in chosen])
    return batches


def _record(event: Event, offset: int) -> Record:
    envelope = Envelope(
        type=event.TYPE, source="/bench/services", subject=event.proposal_id, data=event.model_dump(mode="json")
    )
    key, value, headers = to_kafka(envelope)
    return Record(event.TOPIC, 0, offset, key, value, headers)


async def run(
    name: str,
    url: str,
    postmaster: int | None,
    handler: Any,
    prepare: Callable[..., Any] | None,
    args: Any,
    finish: Callable[..., Any] | None = None,
) -> None:
    await upgrade_async(name, url)
    metadata = (notify_store if name == "notify" else progress_store).metadata
    engine = create_engine(url)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    processor = EventProcessor(
        service=name,
        consumer=f"bench-{name}",
        engine=engine,
        metadata=metadata,
        handler=handler,
        producer=AcknowledgingProducer(),  # type: ignore[arg-type]
        prepare=prepare,
        finish=finish,
    )
    topics = (PROPOSALS, ASSIGNMENTS) if name == "progress" else None
    outcomes: dict[str, int] = {}
    batches = records(args.proposals, args.batch, topics)
    count_records = sum(len(batch) for batch in batches)
    before = statements[0]
    client, server, wall = time.process_time(), server_cpu(postmaster), time.perf_counter()
    for batch in batches:
        for outcome in await processor.process_batch(batch):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(
        f"{name}: {count_records} records in batches of up to {args.batch} proposals: "
        f"{1000 * (time.process_time() - client) / count_records:.2f} ms CPU per record here, "
        f"{1000 * (server_cpu(postmaster) - server) / count_records:.2f} in the server, "
        f"{(statements[0] - before) / count_records:.2f} statements, "
        f"{1000 * (time.perf_counter() - wall) / count_records:.2f} ms wall; {outcomes}",
        flush=True,
    )
    await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    postmaster = postmaster_of(make_url(args.postgres).port or 5432) if args.postgres else None
    settings = NotifySettings()
    notifier = Notifier(rules=load_rules(settings.rules_path, settings.timezone), settings=settings)
    notify = notify_handlers.on_event(notifier)
    async with database(args.postgres) as url:
        await run("notify", url, postmaster, notify, getattr(notify, "prepare", None), args)
    async with database(args.postgres) as url:
        # As services/progress/app.py wires its lifecycle consumer.
        prepare = deferring_writes(progress_handlers.prefetch_lifecycle)
        await run("progress", url, postmaster, progress_handlers.on_lifecycle_event, prepare, args, write_deferred)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.services", description=__doc__)
    parser.add_argument("--postgres", metavar="URL", help="a postgresql+asyncpg:// URL whose role may create databases")
    parser.add_argument("--proposals", type=int, default=40, help="proposals whose lifecycles run (default 40)")
    parser.add_argument("--batch", type=int, default=5, help="proposals per batch (default 5)")
    return parser.parse_args()


if __name__ == "__main__":
    os.environ.setdefault("PROPOSALFLOW_LOG_LEVEL", "WARNING")
    asyncio.run(main(parse()))
