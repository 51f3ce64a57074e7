"""The outbox relay (DESIGN.md §4): publishes a service's committed outbox rows in order and marks them
sent; a row the broker refuses for good is marked failed and the rows behind it go on, until an operator
retries it (`proposalflow outbox retry`, shared/outbox.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.backoff import backoff_delay
from shared.db import built_once
from shared.failures import is_transient
from shared.observability import METRICS, kafka_attributes, traced
from shared.outbox import limit_outbox_records
from shared.producer import DEFAULT_MAX_REQUEST_SIZE, KafkaPublisher, write_refused_hint

log = logging.getLogger("proposalflow.messaging")
"""Every part of the delivery plumbing logs under one name, as when it was one module."""


_RELAY_TURNS: dict[str, asyncio.Lock] = {}
"""One lock per database: the relays of one process take their turns one after another, so a process
waits for the turn across processes (below) with one connection at most."""


class OutboxRow(NamedTuple):
    """An unsent outbox row as the relay reads it."""

    id: int
    event_id: str
    type: str
    topic: str
    key: str | None
    headers: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RelaySql:
    """The relay's turn on PostgreSQL in three round trips, sent on asyncpg's own connection outside
    SQLAlchemy's transaction handling (docs/performance.md, "The seventh round"):

    1. `take_turn`: `BEGIN` and the transaction-level advisory lock that is the turn, in one simple-protocol
       query (no parameters: the lock's key is our own integer);
    2. `unsent`: the batch of unsent rows (prepared once per connection by asyncpg's statement cache);
    3. :meth:`finish`: the sent rows marked and `COMMIT`, in one simple-protocol query (the ids as integer
       literals, read from the table's own `bigint` column: no text from a row is spliced in).

    Rows the broker refused for good, rare, are marked with a statement of their own before it."""

    take_turn: str
    unsent: str
    mark_failed: str
    table: str

    @classmethod
    def of(cls, table: Table, turn: int) -> RelaySql:
        name = table.name
        return cls(
            take_turn=f"BEGIN; SELECT pg_advisory_xact_lock({int(turn)})",
            unsent=(
                f"SELECT id, event_id, type, topic, key, headers, payload FROM {name} "  # noqa: S608 - our own table
                "WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT $1"
            ),
            mark_failed=f"UPDATE {name} SET failed_at = $1, error = $2 WHERE id = $3",  # noqa: S608 - our own table
            table=name,
        )

    def finish(self, sent_ids: Sequence[int]) -> str:
        """Mark `sent_ids` sent (at the server's clock) and commit: one round trip; just `COMMIT` if none."""
        if not sent_ids:
            return "COMMIT"
        ids = ",".join(str(int(row_id)) for row_id in sent_ids)
        return (
            f"UPDATE {self.table} SET sent_at = clock_timestamp() "  # noqa: S608 - our own table, integer ids
            f"WHERE id = ANY('{{{ids}}}'::bigint[]); COMMIT"
        )


def relay_turn_key(table: Table) -> int:
    """The PostgreSQL advisory lock that is an outbox's relay turn: a signed 64-bit number from the table's
    name (advisory locks belong to one database; a service's outbox is the one `outbox` table in it)."""
    digest = hashlib.sha256(f"proposalflow outbox relay {table.fullname}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RelayTurnFile:
    """The relay turn of the processes sharing one SQLite file: an exclusive `flock` on `<file>-relay.lock`.
    The kernel releases it when its holder exits, however it exits, so a relay killed in the middle of a
    batch never holds the others back. Waited for without holding the loop (polling, 1 to 20 ms apart, as
    `shared.sqlite_inline` waits for the database's own lock). An in-memory database has no other process:
    no file, no lock."""

    def __init__(self, database: str | None) -> None:
        in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
        self._path = None if in_memory else Path(f"{database}-relay.lock")
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        if self._path is None:
            return
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        pause = 0.001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)

    async def __aexit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


OUTBOX_ERROR_CHARS = 2000
"""The most of a failed row's error the outbox keeps (`outbox.error`)."""


@dataclass(slots=True)
class RelayRound:
    """What one batch of the relay came to: rows sent, rows failed for good, and why the rest (if any)
    are still unsent."""

    claimed: int = 0
    sent: list[Any] = field(default_factory=list)
    failed: list[tuple[Any, Exception]] = field(default_factory=list)
    waiting: BaseException | None = None
    """A transient failure (the broker unreachable): the rows not sent or failed wait for the next batch."""


class OutboxRelay:
    """Publishes committed outbox rows in order and marks them sent.

    Several replicas may run: they take turns, one batch each (read, publish, mark), so rows go out in
    id order whatever the number of relays: a PostgreSQL advisory lock, or a file lock beside a SQLite
    file (docs/decisions.md, "One relay's turn at a time").

    A row that fails for good (:func:`is_transient` false: too large for its topic's `max.message.bytes`,
    not authorized, an invalid topic) is marked failed (`failed_at`, `error`), logged as an error and
    counted (`proposalflow_outbox_failures_total`, `proposalflow_outbox_failed_rows`), and the rows behind
    it go on: retried, it would fail the same way for ever and hold back every later event of the
    service. It is not dropped: it stays in the outbox, unsent, until an operator fixes the cause and
    clears the mark (`proposalflow outbox retry`, `shared.outbox.retry_failed_rows`); the relay then
    sends it with the rows waiting then. So order per proposal is given up for that row alone: its
    proposal's later events go out before it, and consumers see them first (progress and notify park
    a proposal's events until they have seen it submitted, and re-run them when it comes).

    Transient failures (the broker down) are retried with backoff for as long as they last.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        metadata: MetaData,
        producer: KafkaPublisher,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
        service: str = "",
        recount_interval: float = 30.0,
    ) -> None:
        """`recount_interval`: how often, while idle, the relay counts the outbox's waiting and failed rows
        for the gauges (a row retried from the command line is seen within it)."""
        self._engine = engine
        self._service = service
        self._backlog_gauge = METRICS.outbox_backlog.labels(service)
        self._failed_gauge = METRICS.outbox_failed_rows.labels(service)
        self._table = metadata.tables["outbox"]
        self._turn = relay_turn_key(self._table)
        self._sql = RelaySql.of(self._table, self._turn)
        self._turn_file: RelayTurnFile | None = None
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._recount_interval = recount_interval
        self._counted_at = -float("inf")
        self._wake = asyncio.Event()
        self._stopping = False
        # What this relay's producer can send is what the service may stage.
        limit_outbox_records(metadata, getattr(producer, "max_request_size", DEFAULT_MAX_REQUEST_SIZE))

    def wake(self) -> None:
        """Called after a commit that staged events, so they go out without waiting for a poll."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were sent. Rows that failed for good are
        marked failed; if some could not be sent for now, what was sent and failed is marked and the
        transient error is raised (those rows wait for the next batch)."""
        done = await self.publish_batch()
        if done.waiting is not None:
            raise done.waiting
        return len(done.sent)

    async def publish_batch(self) -> RelayRound:
        """Publish one batch of unsent rows and mark what became of each; raises only if the database
        does (then nothing of the batch is marked, and what was sent is sent again: the inbox drops it)."""
        one_producer = getattr(self._producer, "one_producer", None)  # stand-ins in tests have one only
        async with one_producer() if one_producer is not None else contextlib.nullcontext():
            return await self._publish_batch()

    async def _publish_batch(self) -> RelayRound:
        # One relay of the service at a time reads, publishes and marks a batch (its turn): rows are
        # published in id order across every replica, so a proposal's events reach their topic in the
        # order they were committed (docs/decisions.md, "One relay's turn at a time").
        async with _RELAY_TURNS.setdefault(self._engine.url.render_as_string(), asyncio.Lock()):
            if self._engine.dialect.name == "postgresql":
                done = await self._postgresql_turn()
            else:
                # SQLite has one write lock per file (every transaction here begins IMMEDIATE): held while
                # the broker is slow or down, it would stop every other write of the service, the HTTP door
                # included. So read, publish, then mark, outside a transaction; the turn across processes
                # is a lock on a file beside the database (`RelayTurnFile`), which the kernel releases
                # when its holder dies. A crash between publishing and marking publishes the rows again,
                # after the ones before them: the consumers' inbox drops the copy.
                if self._turn_file is None:
                    self._turn_file = RelayTurnFile(self._engine.url.database)
                async with self._turn_file:
                    async with self._engine.connect() as conn:
                        rows = await self._unsent(conn)
                    done = await self._publish(rows)
                    async with self._engine.begin() as conn:
                        await self._mark(conn, done)
        METRICS.outbox_published.inc(len(done.sent))
        METRICS.relay_turns.labels(self._service, "some" if done.claimed else "none").inc()
        if done.failed:
            self._report_failed(done.failed)
            with contextlib.suppress(Exception):  # only the gauges: the next count sets them
                await self.backlog()
        return done

    async def _postgresql_turn(self) -> RelayRound:
        """One turn on PostgreSQL, in three round trips (:class:`RelaySql`). The turn is a transaction-level
        advisory lock: waited for (no CPU, no polling), released by the commit, or by the server when the
        holder's connection dies (`kill -9`). The transaction is the relay's own, begun and ended by its
        statements, not SQLAlchemy's: on any failure the connection is invalidated (closed), which rolls it
        back and releases the turn on the server, rather than returned to the pool in a transaction."""
        async with self._engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            try:
                await driver.execute(self._sql.take_turn)
                rows: Sequence[Any] = [
                    OutboxRow(*row) for row in await driver.fetch(self._sql.unsent, self._batch_size)
                ]
                done = await self._publish(rows)
                if done.failed:
                    now = datetime.now(UTC)
                    await driver.executemany(
                        self._sql.mark_failed, [(now, _error_text(exc), row.id) for row, exc in done.failed]
                    )
                await driver.execute(self._sql.finish([row.id for row in done.sent]))
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection is closed either way
                    await conn.invalidate()
                raise
        return done

    async def _unsent(self, conn: AsyncConnection) -> Sequence[Any]:
        table = self._table

        def build() -> Any:
            # No row locks: only the relay whose turn it is reads and marks unsent rows.
            return (
                select(
                    table.c.id,
                    table.c.event_id,
                    table.c.type,
                    table.c.topic,
                    table.c.key,
                    table.c.headers,
                    table.c.payload,
                )
                .where(table.c.sent_at.is_(None))
                .where(table.c.failed_at.is_(None))
                .order_by(table.c.id)
                .limit(bindparam("batch_size"))
            )

        query = built_once(("outbox-unsent", table), build)
        return (await conn.execute(query, {"batch_size": self._batch_size})).all()

    async def _send(self, row: Any) -> asyncio.Future[Any]:
        headers = [(name, value.encode()) for name, value in json.loads(row.headers)]
        parent = next((value.decode() for name, value in headers if name == "traceparent"), None)
        with traced(
            f"{row.topic} publish", parent, kind=SpanKind.PRODUCER, attributes=kafka_attributes(row.topic)
        ) as hop:
            if trace.get_current_span().is_recording():
                # The consumer's span then follows this one, not the request that staged the row.
                headers = [(name, hop.encode() if name == "traceparent" else value) for name, value in headers]
            return await self._producer.send(
                row.topic,
                value=row.payload,
                key=row.key.encode() if row.key is not None else None,
                headers=headers,
            )

    async def _publish(self, rows: Sequence[Any]) -> RelayRound:
        """Send the rows in order and wait until the broker answered for every one sent.

        A row refused for good is set aside and the next rows are sent. A transient failure to queue a
        row (the producer not connected) stops the batch there, so the rows after it wait in order; a
        transient failure of a queued row leaves that row unsent. A row refused by the broker puts the
        producer out of step on its partition (see :class:`KafkaPublisher`), so the rows queued after it
        there fail with `OutOfOrderSequenceNumber`, a transient error: they go with the next batch, through
        a new producer (the whole batch goes through one: :meth:`KafkaPublisher.one_producer`)."""
        done = RelayRound(claimed=len(rows))
        queued: list[tuple[Any, asyncio.Future[Any]]] = []
        for row in rows:
            try:
                future = await self._send(row)
            except Exception as exc:  # noqa: BLE001 - sorted below: transient waits, anything else fails the row
                if is_transient(exc):
                    done.waiting = exc
                    break
                done.failed.append((row, exc))  # refused before it was sent: over max_request_size
                continue
            queued.append((row, future))
        results = await asyncio.gather(*(future for _, future in queued), return_exceptions=True)
        for (row, _), result in zip(queued, results, strict=True):
            if not isinstance(result, BaseException):
                done.sent.append(row)
            elif isinstance(result, Exception) and not is_transient(result):
                done.failed.append((row, result))
            elif done.waiting is None:
                done.waiting = result
        done.failed.sort(key=lambda failure: int(failure[0].id))
        return done

    async def _mark(self, conn: AsyncConnection, done: RelayRound) -> None:
        table = self._table
        now = datetime.now(UTC)
        if done.sent:
            query = built_once(
                ("outbox-mark-sent", table),
                lambda: (
                    update(table)
                    .where(table.c.id.in_(bindparam("ids", expanding=True)))
                    .values(sent_at=bindparam("sent_at"))
                ),
            )
            await conn.execute(query, {"ids": [row.id for row in done.sent], "sent_at": now})
        if done.failed:
            query = built_once(
                ("outbox-mark-failed", table),
                lambda: (
                    update(table)
                    .where(table.c.id == bindparam("row_id"))
                    .values(failed_at=bindparam("failed_at"), error=bindparam("failure"))
                ),
            )
            failures = [{"row_id": row.id, "failed_at": now, "failure": _error_text(exc)} for row, exc in done.failed]
            await conn.execute(query, failures)

    def _report_failed(self, failed: Sequence[tuple[Any, Exception]]) -> None:
        for row, exc in failed:
            user = getattr(self._producer, "user", "(this service's Kafka user)")
            hint = write_refused_hint(exc, user=user, topic=row.topic)
            log.error(
                "outbox row %s (%s %s of proposal %s, for %s) can never be published as it is: %s%s; marked "
                "failed, the rows behind it go on. Fix the cause, then `proposalflow outbox retry %s --id %s`",
                row.id,
                row.type,
                row.event_id,
                row.key,
                row.topic,
                _error_text(exc),
                f" ({hint})" if hint else "",
                self._service or "<service>",
                row.id,
            )
        METRICS.outbox_failures.labels(self._service).inc(len(failed))

    async def backlog(self) -> int:
        """Unsent rows waiting to be published now (failed rows not counted); also sets the
        `proposalflow_outbox_backlog` and `proposalflow_outbox_failed_rows` gauges."""
        table = self._table
        async with self._engine.connect() as conn:
            unsent, failed = (
                await conn.execute(
                    select(func.count(), func.count(table.c.failed_at))
                    .select_from(table)
                    .where(table.c.sent_at.is_(None))
                )
            ).one()
        waiting = int(unsent) - int(failed)
        self._backlog_gauge.set(waiting)
        self._failed_gauge.set(int(failed))
        self._counted_at = time.monotonic()
        return waiting

    async def run(self) -> None:
        """Publish until stopped; on a broker or database error, back off and try again."""
        failures = 0
        while not self._stopping:
            try:
                if time.monotonic() - self._counted_at >= self._recount_interval:
                    # Failed rows outlive a restart, and a retry from the command line clears them.
                    await self.backlog()
                # Cleared before the batch reads, not after it: a commit that wakes the relay while the
                # batch is under way is then published at once by the next one, not at the next poll.
                self._wake.clear()
                done = await self.publish_batch()
                if done.waiting is not None:
                    raise done.waiting
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure here is retried, never dropped
                failures += 1
                delay = backoff_delay(failures, 0.2, self._max_backoff)
                log.warning("outbox relay failed (%r); retrying in %.1fs", exc, delay)
                # While publishing fails, the backlog is what an operator needs to see grow.
                with contextlib.suppress(Exception):
                    await self.backlog()
                await asyncio.sleep(delay)
                continue
            if done.claimed == self._batch_size:
                continue
            # A short batch took every unsent row this relay could claim: nothing is waiting.
            self._backlog_gauge.set(0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._turn_file is not None:
            self._turn_file.close()


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= OUTBOX_ERROR_CHARS else text[: OUTBOX_ERROR_CHARS - 1] + "…"
