"""Delivery guarantees (DESIGN.md §4): transactional outbox, inbox, retries, parking and dead letters.

Writing: a service calls :func:`add_to_outbox` inside the transaction that changes its state; the
:class:`OutboxRelay` publishes committed rows with an idempotent producer (`acks=all`) and marks
them sent. A broker outage delays events; it never loses them. An event too large to publish is refused
where it is staged (:class:`EventTooLarge`); a row the broker still refuses for good is marked failed and
the rows behind it go on, until an operator retries it (`proposalflow outbox retry`).

Reading: :class:`EventProcessor` never raises: decode → inbox (skip a duplicate) → handler, all in
one database transaction → then the caller commits the offset. A batch of records shares one
transaction when every record goes the ordinary way; otherwise its records go one at a time.
A transient failure (database or broker down) is retried with capped backoff for as long as it
takes; any other failure is retried a few times and then dead-lettered, and the partition moves on.
A handler that needs an event it has not seen yet raises :class:`NotReady`: the record is parked and
re-run after the next event of the same subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import asyncpg  # type: ignore[import-untyped]
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InvalidTopicError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedCodecError,
    UnsupportedForMessageFormatError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import MetaData, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.backoff import backoff_delay as backoff_delay
from shared.db import built_once, driver_connection
from shared.envelope import Envelope, EnvelopeError, encode_data, from_kafka, to_kafka_headers
from shared.events import Event, dlq_topic, source_of
from shared.observability import METRICS, bind_context, current_traceparent, traced

if TYPE_CHECKING:
    from shared.settings import CommonSettings

log = logging.getLogger("proposalflow.messaging")


class NotReady(Exception):
    """The handler needs an event it has not seen yet (no order across topics): park and re-run."""


class PermanentError(Exception):
    """This record can never succeed as it is (bad schema, a rule it breaks): dead-letter it."""


class EventTooLarge(PermanentError):
    """An event whose Kafka record would be over the producer's `max_request_size`: the producer would
    refuse it, so :func:`add_to_outbox` refuses it before anything is stored (the caller's transaction
    rolls back). Over HTTP it is a 413 problem (shared/http.py); in a consumer's handler it dead-letters
    the record being handled, like any :class:`PermanentError`."""

    def __init__(self, event_type: str, proposal_id: str | None, size: int, limit: int) -> None:
        self.event_type = event_type
        self.proposal_id = proposal_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {event_type} of proposal {proposal_id} would be a Kafka record of {size} bytes, over the "
            f"{limit} bytes the producer sends (PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE)"
        )


class Record(Protocol):
    """What the processor needs of a Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record read back from the parked-events table."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


Handler = Callable[[AsyncConnection, Envelope, "Record"], Awaitable[None]]


# Writing ------------------------------------------------------------------------------------------


def envelope_for(
    event: Event,
    service: str,
    *,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> Envelope:
    """The CloudEvent that carries one event of this service."""
    extensions: dict[str, str] = {}
    if event.correlation_id:
        extensions["correlationid"] = event.correlation_id
    if traceparent:
        extensions["traceparent"] = traceparent
    kwargs: dict[str, Any] = {}
    if event_id is not None:
        kwargs["id"] = event_id
    if time is not None:
        kwargs["time"] = time
    return Envelope(
        type=event.TYPE,
        source=source_of(service),
        subject=event.proposal_id,
        data=event.model_dump(mode="json"),
        extensions=extensions,
        **kwargs,
    )


def _outbox(metadata: MetaData) -> Table:
    return metadata.tables["outbox"]


DEFAULT_MAX_REQUEST_SIZE = 1_048_576
"""aiokafka's default `max_request_size`, and `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE`'s."""

_RECORD_LIMIT = "proposalflow_max_record_bytes"
"""Where an outbox table keeps the size budget of the producer that publishes it (`Table.info`)."""


def limit_outbox_records(metadata: MetaData, max_bytes: int) -> None:
    """Make :func:`add_to_outbox` refuse events over `max_bytes` on this metadata's outbox: the
    `max_request_size` of the producer that publishes it. :class:`OutboxRelay` calls it with its
    producer's, so a service's HTTP door and handlers measure against the limit their relay meets."""
    _outbox(metadata).info[_RECORD_LIMIT] = max_bytes


def outbox_record_limit(metadata: MetaData) -> int:
    """The largest record this metadata's outbox accepts (see :func:`limit_outbox_records`); without a
    relay in the process, the default `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE`."""
    return int(_outbox(metadata).info.get(_RECORD_LIMIT, DEFAULT_MAX_REQUEST_SIZE))


async def add_to_outbox(
    conn: AsyncConnection,
    metadata: MetaData,
    service: str,
    events: Iterable[Event | tuple[Event, str]],
    *,
    traceparent: str | None = None,
    topic: str | None = None,
) -> list[Envelope]:
    """Stage events in the outbox, in the caller's transaction. A `(event, id)` pair fixes the id
    (scheduled events use deterministic ids, so two replicas that both fire make one event).
    `topic` overrides the events' own topic (tests on isolated topics).

    Each event is measured as the producer will measure its record (key, value and headers, in a batch
    of its own: :func:`record_size`) against :func:`outbox_record_limit`; one over it raises
    :class:`EventTooLarge` before anything is written. Stored, it would be refused at every attempt to
    publish it: before this check, such a row held back every row behind it for ever. The relay sends a
    row as it is stored (a new `traceparent` has the same length), so what passes here passes the
    producer; a topic whose own `max.message.bytes` is lower is the relay's to meet (failed rows)."""
    envelopes: list[Envelope] = []
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    traceparent = traceparent or current_traceparent()
    limit = outbox_record_limit(metadata)
    for item in events:
        event, event_id = item if isinstance(item, tuple) else (item, None)
        envelope = envelope_for(event, service, event_id=event_id, time=now, traceparent=traceparent)
        headers = to_kafka_headers(envelope)
        payload = encode_data(envelope.data)
        key = envelope.subject.encode() if envelope.subject is not None else None
        size = record_size(key, payload, headers)
        if size > limit:
            raise EventTooLarge(envelope.type, envelope.subject, size, limit)
        envelopes.append(envelope)
        rows.append(
            {
                "event_id": envelope.id,
                "topic": topic or event.TOPIC,
                "key": envelope.subject,
                "type": envelope.type,
                "headers": json.dumps([(k, v.decode()) for k, v in headers]),
                "payload": payload,
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(_insert_new(_outbox(metadata), conn.dialect.name, "event_id"), rows)
        conn.info[STAGED] = True
    return envelopes


STAGED = "proposalflow_outbox_staged"
"""Set in a connection's `info` by :func:`add_to_outbox`; :func:`staged_events` takes it."""


def staged_events(conn: AsyncConnection) -> bool:
    """Whether the transaction on `conn` staged outbox rows since the last look (and forget it): after a
    commit that staged nothing, the relay need not look for rows. `info` outlives the transaction (it
    is the pooled connection's): a mark left by a transaction that rolled back wakes the relay once for
    nothing, never the other way round."""
    return bool(conn.info.pop(STAGED, False))


_INSERTS: dict[tuple[Table, str, str | None], Any] = {}


def _insert_new(table: Table, dialect: str, unique: str | None = None) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` into `table`, built once per table and dialect: executed with
    its rows as parameters, SQLAlchemy compiles it once, not on every call (docs/performance.md)."""
    key = (table, dialect, unique)
    stmt = _INSERTS.get(key)
    if stmt is None:
        index = [unique] if unique else None
        if dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=index)
        elif dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=index)
        else:
            stmt = insert(table)
        _INSERTS[key] = stmt
    return stmt


def kafka_client_options(settings: CommonSettings) -> dict[str, Any]:
    """Security settings (TLS, SASL/SCRAM) passed through to aiokafka clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def kafka_user(settings: CommonSettings) -> str:
    """The principal the brokers know this client as, for messages about its ACLs."""
    if settings.kafka_sasl_mechanism and settings.kafka_sasl_username:
        return f"User:{settings.kafka_sasl_username}"
    return "(this client's principal; no SASL user is set)"


def write_refused_hint(exc: BaseException, *, user: str, topic: str) -> str:
    """What to grant when the brokers refuse a write for want of an ACL ('' for any other refusal)."""
    if isinstance(exc, TopicAuthorizationFailedError):
        return (
            f"Kafka user {user} may not write topic {topic}: grant it WRITE on topic {topic} "
            '(docs/operations.md, "Kafka users and ACLs")'
        )
    if isinstance(exc, ClusterAuthorizationFailedError):
        return (
            f"Kafka user {user} may not start an idempotent producer: grant it WRITE on the topics it publishes "
            '(brokers before Kafka 3.0 also need IDEMPOTENT_WRITE on the cluster; docs/operations.md, "Kafka users '
            'and ACLs")'
        )
    return ""


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """A record's size as aiokafka's producer measures it against `max_request_size`: an upper bound of
    the record alone in a batch, batch header included. A record no larger than that is never refused by
    the producer, nor by a broker whose `message.max.bytes` (or the topic's `max.message.bytes`) is at
    least as large."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


RETIRED_PRODUCER_STOP_S = 10.0
"""How long :meth:`KafkaPublisher.stop` waits for producers it replaced to flush what they still held."""


class KafkaPublisher:
    """An idempotent producer with `acks=all` (a retried send is never written twice), created when
    started, since aiokafka clients belong to a running event loop.

    Its `max_request_size` comes from `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE` and is public: the dead-letter
    writer sizes its letters by it (see `EventProcessor._dead_letter`), and the relay's outbox refuses
    larger events (:func:`limit_outbox_records`).

    A record the broker refuses (too large for its topic, not authorized) leaves aiokafka's idempotent
    producer out of step with the broker: the producer has counted the refused batch's sequence numbers,
    the broker has not, so every later record to that partition fails with `OutOfOrderSequenceNumber`
    for as long as the producer lives (aiokafka, unlike the Java client, does not reset them). So after
    any failed delivery the next :meth:`send` (outside a :meth:`one_producer` span) replaces the producer:
    a new producer id starts at sequence 0."""

    def __init__(self, settings: CommonSettings, *, client_id: str) -> None:
        self._options = {"client_id": client_id, **kafka_client_options(settings)}
        self.max_request_size: int = settings.kafka_max_request_size
        self.user = kafka_user(settings)
        self._producer: AIOKafkaProducer | None = None
        self._stale = False
        self._renewing = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()
        self._pins = 0

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=15000,
            max_request_size=self.max_request_size,
            **self._options,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def start(self) -> None:
        self._producer = await self._new_producer()
        self._stale = False

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._retired:
            _, late = await asyncio.wait(self._retired, timeout=RETIRED_PRODUCER_STOP_S)
            for task in late:
                task.cancel()

    def _delivered(self, producer: AIOKafkaProducer, future: asyncio.Future[Any]) -> None:
        """A delivery's outcome: a failed one may have put its producer out of step with the broker (one
        already replaced is left alone)."""
        if not future.cancelled() and future.exception() is not None and producer is self._producer:
            self._stale = True

    async def _renew(self) -> None:
        """Replace a producer whose delivery failed. First the old one delivers (or fails) what it holds,
        sends waiting meanwhile, so a record sent by the new producer never overtakes an earlier one still
        in the old; not while a :meth:`one_producer` span lasts. If a new one cannot start (the broker
        down), the old one stays and the next send tries again."""
        async with self._renewing:
            if not self._stale or self._producer is None or self._pins:
                return
            await self._producer.flush()
            producer = await self._new_producer()
            if self._pins:  # a span began meanwhile: it keeps the old producer, and this one goes
                self._retire(producer)
                return
            old, self._producer, self._stale = self._producer, producer, False
            log.info("replaced the Kafka producer after a failed delivery (its sequence numbers may be off)")
            self._retire(old)

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Stop a producer in the background, letting it flush what it still holds."""
        task = asyncio.create_task(producer.stop(), name="retired-kafka-producer")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    @contextlib.asynccontextmanager
    async def one_producer(self) -> AsyncIterator[None]:
        """A span of sends that all go through one producer (a relay's batch): a producer due to be
        replaced is replaced first, and none is while the span lasts. Replaced in the middle, a record of
        the batch sent by the new producer could overtake earlier ones that failed in the old
        (`OutOfOrderSequenceNumber` behind a refused record) and are sent again with the next batch."""
        if self._stale:
            await self._renew()
        self._pins += 1
        try:
            yield
        finally:
            self._pins -= 1

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaConnectionError("the Kafka producer is not connected yet")
        return self._producer

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        """Queue a record; the returned future resolves when the broker acknowledged it."""
        if self._stale and not self._pins:
            await self._renew()
        producer = self._started()
        future: asyncio.Future[Any] = await producer.send(topic, value=value, key=key, headers=headers)
        future.add_done_callback(functools.partial(self._delivered, producer))
        return future

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await (await self.send(topic, value=value, key=key, headers=headers))


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
    """The relay's statements on PostgreSQL, sent on asyncpg's own connection (prepared once per
    connection by asyncpg's statement cache): read, mark and take the turn are a constant number of
    round trips per batch, without SQLAlchemy's per-execute cost (docs/performance.md)."""

    take_turn: str
    unsent: str
    mark_sent: str

    @classmethod
    def of(cls, table: Table) -> RelaySql:
        name = table.name
        return cls(
            take_turn="SELECT pg_advisory_xact_lock($1)",
            unsent=(
                f"SELECT id, event_id, type, topic, key, headers, payload FROM {name} "  # noqa: S608 - our own table
                "WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT $1"
            ),
            mark_sent=f"UPDATE {name} SET sent_at = $1 WHERE id = ANY($2::bigint[])",  # noqa: S608 - our own table
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
        self._table = _outbox(metadata)
        self._turn = relay_turn_key(self._table)
        self._sql = RelaySql.of(self._table)
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
                # The turn is a transaction-level advisory lock: waited for (no CPU, no polling), released
                # by the commit, or by the server when the holder's connection dies (`kill -9`).
                async with self._engine.begin() as conn:
                    driver = await driver_connection(conn)
                    await driver.execute(self._sql.take_turn, self._turn)
                    rows: Sequence[Any] = [
                        OutboxRow(*row) for row in await driver.fetch(self._sql.unsent, self._batch_size)
                    ]
                    done = await self._publish(rows)
                    if done.sent:
                        await driver.execute(self._sql.mark_sent, datetime.now(UTC), [row.id for row in done.sent])
                    await self._mark(conn, RelayRound(failed=done.failed))
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
        if done.failed:
            self._report_failed(done.failed)
            with contextlib.suppress(Exception):  # only the gauges: the next count sets them
                await self.backlog()
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
        with traced(f"{row.topic} publish", parent, kind=SpanKind.PRODUCER, attributes=_kafka(row.topic)) as hop:
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
            self._wake.clear()
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


def _kafka(topic: str) -> dict[str, str]:
    """OpenTelemetry messaging attributes of a Kafka topic."""
    return {"messaging.system": "kafka", "messaging.destination.name": topic}


# Reading ------------------------------------------------------------------------------------------


TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
"""PostgreSQL error classes that say 'not now': connection exception, transaction rollback (serialization
failure, deadlock), insufficient resources (too many connections), operator intervention (shutdown,
restart, cannot connect now)."""


RECORD_TOO_LARGE_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
)
"""The record is larger than the producer's `max_request_size` or the broker's `message.max.bytes` (the
producer and the broker both raise `MessageSizeTooLargeError`): sent again as it is, it fails again."""

PERMANENT_KAFKA_ERRORS: tuple[type[KafkaError], ...] = (
    *RECORD_TOO_LARGE_ERRORS,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedForMessageFormatError,
    UnsupportedCodecError,
    KafkaConfigurationError,
)
"""Kafka errors that say 'never' (the record, or a configuration someone has to change), not 'not now'.

A list, not aiokafka's `retriable` flag: that flag says whether the client may resend the same request
at once, and it is false for much of what a broker outage raises (`KafkaTimeoutError`,
`BrokerNotAvailableError`, `RequestTimedOutError`'s neighbours, a bare `KafkaError`, `UnknownError`),
which must be waited out. Every class here is one aiokafka marks not retriable (a unit test keeps it so).
Authentication failures are left out on purpose: a broker that has just restarted may not have loaded
its SCRAM credentials yet, so one may pass by itself."""


def is_transient(exc: BaseException) -> bool:
    """Errors that say 'not now' rather than 'never': the database or the broker is unreachable.

    Any Kafka error counts as 'not now' except :data:`PERMANENT_KAFKA_ERRORS`: an error nobody foresaw
    costs waiting, never a dead letter or a lost event."""
    if isinstance(exc, PERMANENT_KAFKA_ERRORS):
        return False
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | KafkaError | socket.gaierror):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError | asyncpg.exceptions.PostgresConnectionError):
        return True  # asyncpg's own connection (shared.db.driver_connection) closed or lost
    if isinstance(exc.__cause__, asyncpg.exceptions.PostgresError | asyncpg.exceptions.InterfaceError):
        # SQLAlchemy's asyncpg adapter translated it (a `BEGIN` it sent for `driver_connection`) without
        # wrapping it in a DBAPIError: judge the driver's error.
        return is_transient(exc.__cause__)
    if isinstance(exc, DBAPIError | asyncpg.exceptions.PostgresError):
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        # asyncpg's errors reach SQLAlchemy as a generic DBAPIError, or come as they are from statements sent
        # on asyncpg's own connection: tell them apart by SQLSTATE. A database that refuses connections for
        # a while (failover, maintenance) must be waited out, not dead-lettered.
        sqlstate = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
            or (sqlstate == "55000" and "not currently accepting connections" in str(getattr(exc, "orig", exc)))
        ):
            return True
    return False


DLQ_ERROR_BYTES = 4000
"""The most of the error (`x-dlq-error`, UTF-8) a dead letter carries."""

DLQ_TRIMMED_ERROR_BYTES = 500
"""The most of the error a dead letter that had to shrink carries: the exception's type and the start of
its message, which is what names the cause."""


@dataclass(frozen=True, slots=True)
class DeadLetterForm:
    """One way to write a dead letter: its key, value and headers, the `x-dlq-*` ones included."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        return record_size(self.key, self.value, self.headers)


def _utf8_within(text: str, limit: int) -> bytes:
    """`text` in UTF-8, at most `limit` bytes, never cutting a character in two; a cut text ends in '…'."""
    data = text.encode()
    if len(data) <= limit:
        return data
    ellipsis = "…".encode()
    return data[: limit - len(ellipsis)].decode(errors="ignore").encode() + ellipsis


def dead_letter_forms(record: Record, error: str, facts: Sequence[tuple[str, bytes]]) -> Iterator[DeadLetterForm]:
    """The forms of one dead letter, largest first, each leaving out more of the original record:

    1. the record as it came, the error (`x-dlq-error`) up to :data:`DLQ_ERROR_BYTES`;
    2. the error trimmed to :data:`DLQ_TRIMMED_ERROR_BYTES`;
    3. the value left out: `x-dlq-value-omitted: <its size>`, `x-dlq-value-sha256: <hex digest>`;
    4. the original headers left out too: `x-dlq-headers-omitted: <how many>`;
    5. the key left out too: `x-dlq-key-omitted: <its size>`.

    Every form carries `facts`, the other `x-dlq-*` headers, among them the original's topic, partition
    and offset: what a form leaves out is still in the source topic there until its retention ends, and
    `proposalflow dlq replay` fetches it from there (checking the digest). The error is trimmed first
    because a letter that keeps its value can be replayed whatever the source's retention. A form that
    leaves nothing out is skipped (no value, no headers, no key). The last form holds nothing of the
    original but a trimmed error and the facts, well under the smallest `max_request_size` the settings
    allow, so one form always fits. The value becomes empty (null), not a placeholder: a placeholder
    under the original's `ce_*` headers would read as the event with other data.
    """
    key, value, headers = record.key, record.value, list(record.headers)
    yield DeadLetterForm(key, value, [*headers, ("x-dlq-error", _utf8_within(error, DLQ_ERROR_BYTES)), *facts])
    trimmed = [("x-dlq-error", _utf8_within(error, DLQ_TRIMMED_ERROR_BYTES)), *facts]
    yield DeadLetterForm(key, value, [*headers, *trimmed])
    if value is not None:
        trimmed += [
            ("x-dlq-value-omitted", str(len(value)).encode()),
            ("x-dlq-value-sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        yield DeadLetterForm(key, None, [*headers, *trimmed])
    if headers:
        trimmed.append(("x-dlq-headers-omitted", str(len(headers)).encode()))
        yield DeadLetterForm(key, None, trimmed)
    if key is not None:
        trimmed.append(("x-dlq-key-omitted", str(len(key)).encode()))
        yield DeadLetterForm(None, None, trimmed)


def admit_sql(inbox: Table, parked: Table) -> str:
    """PostgreSQL: a batch's parked-events look and inbox insert as one statement (`EventProcessor._admit`),
    sent on asyncpg's own connection. The insert happens only when no proposal of the batch has a parked
    event. Parameters: consumer, subjects, keys, received_at."""
    return f"""
        WITH parked AS (
            SELECT DISTINCT subject FROM {parked.name}
            WHERE consumer = $1 AND subject = ANY($2::varchar[])
        ), new AS (
            INSERT INTO {inbox.name} (consumer, event_id, received_at)
            SELECT $1, key, $4 FROM unnest($3::varchar[]) AS key
            WHERE NOT EXISTS (SELECT 1 FROM parked)
            ON CONFLICT DO NOTHING
            RETURNING event_id
        )
        SELECT 'parked' AS kind, subject AS value FROM parked
        UNION ALL
        SELECT 'new', event_id FROM new
        """  # noqa: S608 - table names from the service's own metadata, values as parameters


class EventProcessor:
    """Runs one consumer's handler for every record, exactly once in effect."""

    def __init__(
        self,
        *,
        service: str,
        consumer: str,
        engine: AsyncEngine,
        metadata: MetaData,
        handler: Handler,
        producer: KafkaPublisher,
        after_commit: Callable[[], None] = lambda: None,
        dedupe_key: Callable[[Envelope, Record], str] | None = None,
        retry_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 30.0,
        prepare: Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[None]] | None = None,
        finish: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        """`prepare` and `finish` are for handlers that work faster by the batch: `prepare` runs first in
        each transaction with the envelopes about to be handled (to read what they need in one query),
        `finish` runs last in each transaction that handled something (to write what they deferred).
        Both run in every transaction that calls the handler, a batch's or a single record's. A handler
        may carry them itself, as attributes of the same names (services/audit/handlers.py)."""
        self.service = service
        self.consumer = consumer
        self._engine = engine
        self._inbox = metadata.tables["inbox"]
        self._parked = metadata.tables["parked_events"]
        self._admit_sql = admit_sql(self._inbox, self._parked)
        self._parked_sql = (
            f"SELECT DISTINCT subject FROM {self._parked.name} "  # noqa: S608 - our own table
            "WHERE consumer = $1 AND subject = ANY($2::varchar[])"
        )
        self._handler = handler
        self._producer = producer
        self._after_commit = after_commit
        self._dedupe_key = dedupe_key or (lambda envelope, _record: f"{envelope.source}|{envelope.id}")
        self._retry_attempts = retry_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._prepare = prepare or getattr(handler, "prepare", None)
        self._finish = finish or getattr(handler, "finish", None)

    async def process(self, record: Record) -> str:
        """Handle one record; returns what happened: handled, duplicate, parked or dead-lettered.

        Returns only once the outcome is stored: the caller may then commit the offset.
        """
        try:
            envelope = from_kafka(record.value, record.headers)
        except EnvelopeError as exc:
            await self._dead_letter(record, exc, attempts=1)
            return "dead-lettered"
        attributes = {
            **_kafka(record.topic),
            "messaging.consumer.group.name": self.consumer,
            "messaging.message.id": envelope.id,
            "cloudevents.event_type": envelope.type,
        }
        with (
            traced(
                f"{record.topic} process", envelope.traceparent, kind=SpanKind.CONSUMER, attributes=attributes
            ) as hop,
            bind_context(proposal_id=envelope.subject, correlation_id=envelope.correlation_id, traceparent=hop),
        ):
            outcome = await self._with_retries(record, envelope)
            trace.get_current_span().set_attribute("proposalflow.outcome", outcome)
            if outcome in ("handled", "parked") and envelope.subject:
                # After parking too: what it waits for may have been committed (by another replica)
                # between our attempt and our parking, and nobody else would look again.
                await self._rerun_parked(envelope.subject)
            return outcome

    async def process_batch(self, records: Sequence[Record]) -> list[str]:
        """Handle a batch of records, in order; returns each one's outcome once all are stored.

        The common case (every record decodes, none waits behind a parked event, every handler
        succeeds) is one transaction for the whole batch: inbox rows and effects of every record
        commit together, so the caller commits the offsets once. Records of a proposal with a parked
        event go one at a time, behind it, after the others' transaction; anything else rolls that
        transaction back and takes the records one at a time through :meth:`process`, with its
        retries, parking and dead letters: the batch changes the cost, never the outcome.
        """
        if not records:
            return []
        try:
            envelopes = [from_kafka(record.value, record.headers) for record in records]
        except EnvelopeError:
            return [await self.process(record) for record in records]
        outcomes = await self._in_one_transaction(records, envelopes)
        if isinstance(outcomes, list):
            return outcomes
        if outcomes is None:
            return [await self.process(record) for record in records]
        # Some proposals have parked events: the others' records still go together. A proposal's
        # records are all on one side, in order, and there is no order across proposals to keep.
        held = outcomes
        free = [n for n, envelope in enumerate(envelopes) if envelope.subject not in held]
        results: dict[int, str] = {}
        together = (
            await self._in_one_transaction([records[n] for n in free], [envelopes[n] for n in free]) if free else []
        )
        if isinstance(together, list):
            results.update(zip(free, together, strict=True))
        for n, record in enumerate(records):
            if n not in results:
                results[n] = await self.process(record)
        return [results[n] for n in range(len(records))]

    async def _in_one_transaction(
        self, records: Sequence[Record], envelopes: Sequence[Envelope]
    ) -> list[str] | set[str] | None:
        """The batch's outcomes; or the proposals with parked events, whose records must go one at a time
        behind them (nothing stored); or None when the whole batch must go one record at a time."""
        subjects = {envelope.subject for envelope in envelopes if envelope.subject}
        outcomes: list[str] = []
        try:
            async with self._engine.begin() as conn:
                keys = [self._dedupe_key(e, r)[:200] for r, e in zip(records, envelopes, strict=True)]
                if conn.dialect.name == "postgresql":
                    parked, fresh = await self._admit(conn, subjects, keys)
                else:
                    parked = await self._parked_subjects(conn, subjects) if subjects else set()
                    fresh = [] if parked else await self._first_times(conn, keys)
                if parked:
                    # Keep order within a proposal: its records go one at a time, behind what is parked.
                    return parked
                if self._prepare is not None:
                    await self._prepare(conn, [e for e, new in zip(envelopes, fresh, strict=True) if new])
                for record, envelope, new in zip(records, envelopes, fresh, strict=True):
                    attributes = {
                        **_kafka(record.topic),
                        "messaging.consumer.group.name": self.consumer,
                        "messaging.message.id": envelope.id,
                        "cloudevents.event_type": envelope.type,
                    }
                    with (
                        traced(
                            f"{record.topic} process",
                            envelope.traceparent,
                            kind=SpanKind.CONSUMER,
                            attributes=attributes,
                        ) as hop,
                        bind_context(
                            proposal_id=envelope.subject, correlation_id=envelope.correlation_id, traceparent=hop
                        ),
                    ):
                        if not new:
                            outcome = "duplicate"
                        else:
                            with METRICS.handler_seconds.labels(self.consumer).time():
                                await self._handler(conn, envelope, record)
                            outcome = "handled"
                        trace.get_current_span().set_attribute("proposalflow.outcome", outcome)
                    outcomes.append(outcome)
                if self._finish is not None and "handled" in outcomes:
                    await self._finish(conn)
                staged = staged_events(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing committed; one at a time decides each record's fate
            log.info("batch of %d rolled back (%r); processing its records one at a time", len(records), exc)
            return None
        if staged:
            # Only then has the relay anything new to publish: audit, and most of notify's batches, stage
            # nothing, and a relay turn for nothing is five statements on PostgreSQL.
            self._after_commit()
        for outcome in outcomes:
            METRICS.events_processed.labels(self.consumer, outcome).inc()
        handled = {e.subject for e, o in zip(envelopes, outcomes, strict=True) if o == "handled" and e.subject}
        if handled and self._engine.dialect.name != "sqlite":
            # Another replica may have parked, while this transaction ran, an event of these proposals
            # that was waiting for them (a replica re-runs what it parks at once, but that may have been
            # before this commit). On SQLite transactions never overlap: a record parked after this
            # commit is re-run by whoever parked it, and sees this commit; one parked before it was seen
            # by the check at the start of the transaction.
            async with self._engine.connect() as conn:
                # Outside a transaction: one round trip, on asyncpg's own connection.
                driver = await driver_connection(conn)
                waiting = {row[0] for row in await driver.fetch(self._parked_sql, self.consumer, sorted(handled))}
            for subject in sorted(waiting):
                await self._rerun_parked(subject)
        return outcomes

    async def _parked_subjects(self, conn: AsyncConnection, subjects: Iterable[str]) -> set[str]:
        query = built_once(
            ("parked-subjects", self._parked),
            lambda: (
                select(self._parked.c.subject)
                .where(self._parked.c.consumer == bindparam("consumer"))
                .where(self._parked.c.subject.in_(bindparam("subjects", expanding=True)))
                .distinct()
            ),
        )
        result = await conn.execute(query, {"consumer": self.consumer, "subjects": list(subjects)})
        return set(result.scalars().all())

    async def _with_retries(self, record: Record, envelope: Envelope) -> str:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await self._attempt(record, envelope)
            except NotReady as exc:
                await self._park_until_stored(record, envelope, str(exc))
                log.info("parked %s %s: %s", envelope.type, envelope.id, exc)
                METRICS.events_processed.labels(self.consumer, "parked").inc()
                return "parked"
            except (PermanentError, ValidationError) as exc:
                await self._dead_letter(record, exc, attempts=attempt)
                return "dead-lettered"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    delay = backoff_delay(attempt, self._base_delay, self._max_delay)
                    log.warning("transient failure on %s (%s); retrying in %.1fs", envelope.id, exc, delay)
                    METRICS.retries.labels(self.consumer).inc()
                    await asyncio.sleep(delay)
                    continue
                if attempt >= self._retry_attempts:
                    log.exception("giving up on %s after %d attempts", envelope.id, attempt)
                    await self._dead_letter(record, exc, attempts=attempt)
                    return "dead-lettered"
                delay = backoff_delay(attempt, self._base_delay, self._max_delay)
                log.warning("failure on %s (%r); attempt %d, retrying in %.1fs", envelope.id, exc, attempt, delay)
                METRICS.retries.labels(self.consumer).inc()
                await asyncio.sleep(delay)
                continue
            METRICS.events_processed.labels(self.consumer, outcome).inc()
            return outcome

    async def _attempt(self, record: Record, envelope: Envelope, parked_id: int | None = None) -> str:
        async with self._engine.begin() as conn:
            if parked_id is None and envelope.subject and await self._has_parked(conn, envelope.subject, record.topic):
                # Keep order within a topic: behind a parked event of the same subject, wait too.
                raise NotReady("an earlier event of this proposal on this topic is still pending")
            if not await self._first_time(conn, self._dedupe_key(envelope, record)[:200]):
                outcome = "duplicate"
            else:
                if self._prepare is not None:
                    await self._prepare(conn, [envelope])
                with METRICS.handler_seconds.labels(self.consumer).time():
                    await self._handler(conn, envelope, record)
                if self._finish is not None:
                    await self._finish(conn)
                outcome = "handled"
            if parked_id is not None:
                await conn.execute(delete(self._parked).where(self._parked.c.id == parked_id))
            staged = staged_events(conn)
        if staged:
            self._after_commit()
        return outcome

    async def _first_time(self, conn: AsyncConnection, event_key: str) -> bool:
        """Record (consumer, key); by default the key is source|id, as a CloudEvent is unique by both."""
        values = {"consumer": self.consumer, "event_id": event_key, "received_at": datetime.now(UTC)}
        result = await conn.execute(_insert_new(self._inbox, conn.dialect.name), values)
        return bool(result.rowcount)

    async def _first_times(self, conn: AsyncConnection, event_keys: Sequence[str]) -> list[bool]:
        """:meth:`_first_time` for a batch in one statement: which keys are new, in order (a key twice
        in the batch is new once). The database says which rows it inserted (`RETURNING`), so a key
        another replica stored meanwhile counts as seen, exactly as one at a time."""
        unique = list(dict.fromkeys(event_keys))
        now = datetime.now(UTC)
        rows = [{"consumer": self.consumer, "event_id": key, "received_at": now} for key in unique]
        dialect = conn.dialect.name
        stmt = built_once(
            ("inbox-returning", self._inbox, dialect),
            lambda: _insert_new(self._inbox, dialect).returning(self._inbox.c.event_id),
        )
        inserted = set((await conn.execute(stmt, rows)).scalars().all())
        fresh = []
        for key in event_keys:
            fresh.append(key in inserted)
            inserted.discard(key)
        return fresh

    async def _admit(
        self, conn: AsyncConnection, subjects: set[str], event_keys: Sequence[str]
    ) -> tuple[set[str], list[bool]]:
        """PostgreSQL: the look for parked events of the batch's proposals and :meth:`_first_times` in one
        statement (a round trip less per batch). If any proposal has a parked event, nothing is stored in
        the inbox and its subjects come back; otherwise which keys are new, in order."""
        unique = list(dict.fromkeys(event_keys))
        parameters = {
            "consumer": self.consumer,
            "subjects": sorted(subjects),
            "keys": unique,
            "received_at": datetime.now(UTC),
        }
        driver = await driver_connection(conn)
        found = await driver.fetch(self._admit_sql, *parameters.values())
        parked = {value for kind, value in found if kind == "parked"}
        inserted = {value for kind, value in found if kind == "new"}
        fresh = []
        for key in event_keys:
            fresh.append(key in inserted)
            inserted.discard(key)
        return parked, fresh

    async def _has_parked(self, conn: AsyncConnection, subject: str, topic: str) -> bool:
        query = built_once(
            ("has-parked", self._parked),
            lambda: (
                select(self._parked.c.id)
                .where(self._parked.c.consumer == bindparam("consumer"))
                .where(self._parked.c.subject == bindparam("subject"))
                .where(self._parked.c.topic == bindparam("topic"))
                .limit(1)
            ),
        )
        parameters = {"consumer": self.consumer, "subject": subject, "topic": topic}
        return (await conn.execute(query, parameters)).first() is not None

    async def _park_until_stored(self, record: Record, envelope: Envelope, reason: str) -> None:
        await self._retry_transient(lambda: self._park(record, envelope, reason))

    async def _park(self, record: Record, envelope: Envelope, reason: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(self._parked).values(
                    consumer=self.consumer,
                    subject=envelope.subject or "",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    headers=json.dumps([(k, v.decode(errors="replace")) for k, v in record.headers]),
                    reason=reason,
                    parked_at=datetime.now(UTC),
                )
            )

    async def _rerun_parked(self, subject: str) -> None:
        """Re-run parked records of this subject, oldest first, while any makes progress."""
        progressed = True
        while progressed:
            progressed = False
            query = built_once(
                ("parked-of-subject", self._parked),
                lambda: (
                    select(self._parked)
                    .where(self._parked.c.consumer == bindparam("consumer"))
                    .where(self._parked.c.subject == bindparam("subject"))
                    .order_by(self._parked.c.id)
                ),
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query, {"consumer": self.consumer, "subject": subject})).all()
            blocked_topics: set[str] = set()
            for row in rows:
                if row.topic in blocked_topics:
                    continue
                stored = StoredRecord(
                    topic=row.topic,
                    partition=row.partition,
                    offset=row.offset,
                    key=row.key,
                    value=row.value,
                    headers=[(k, v.encode()) for k, v in json.loads(row.headers)],
                )
                envelope = from_kafka(stored.value, stored.headers)
                try:
                    await self._attempt(stored, envelope, parked_id=row.id)
                except NotReady:
                    blocked_topics.add(row.topic)
                    continue
                except Exception as exc:  # noqa: BLE001 - a parked record that now fails for good
                    if is_transient(exc):
                        return
                    await self._dead_letter(stored, exc, attempts=1)
                    async with self._engine.begin() as conn:
                        await conn.execute(delete(self._parked).where(self._parked.c.id == row.id))
                progressed = True

    async def rerun_all_parked(self) -> None:
        """A sweep over every parked subject (after a restart, or as a periodic safety net)."""
        async with self._engine.connect() as conn:
            subjects = (
                (
                    await conn.execute(
                        select(self._parked.c.subject).where(self._parked.c.consumer == self.consumer).distinct()
                    )
                )
                .scalars()
                .all()
            )
        for subject in subjects:
            await self._rerun_parked(subject)

    async def _retry_transient(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action`, which stores an outcome (a parked record, a dead letter), until it succeeds.

        The offset is committed only after it: giving up would lose the record, so every failure is
        retried with backoff, even one that waiting will not fix (`is_transient` false: the dead-letter
        topic's ACL, a topic the broker refuses), which is then logged as an error for an operator, the
        partition waiting as in an outage. A dead letter too large to send is not such a failure:
        `_dead_letter` sends a smaller form instead of retrying it.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                await action()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - storing the outcome must eventually succeed
                delay = backoff_delay(attempt, self._base_delay, self._max_delay)
                if is_transient(exc):
                    log.warning("could not store outcome (%s); retrying in %.1fs", exc, delay)
                else:
                    log.error(
                        "could not store outcome (%r), which waiting alone will not fix; retrying in %.1fs "
                        "until it is fixed (the record waits, its partition too)",
                        exc,
                        delay,
                    )
                await asyncio.sleep(delay)

    async def _dead_letter(self, record: Record, exc: BaseException, *, attempts: int) -> None:
        """Send the record as it came to `proposalflow.dlq.<service>`, the error in its headers.

        A record near the size limit makes a letter over it (the `x-dlq-*` headers add up to some KB),
        and a too-large send fails the same way every time: retried, it would hold the partition for
        ever. So the letter goes in the largest of its forms (:func:`dead_letter_forms`) within the
        producer's `max_request_size`; if the broker still refuses it as too large (a lower limit on the
        dead-letter topic), in the next smaller form. The smallest form always fits; other failures are
        retried until the letter is stored (`_retry_transient`).
        """
        facts = [
            ("x-dlq-consumer", self.consumer.encode()),
            ("x-dlq-original-topic", record.topic.encode()),
            ("x-dlq-original-partition", str(record.partition).encode()),
            ("x-dlq-original-offset", str(record.offset).encode()),
            ("x-dlq-attempts", str(attempts).encode()),
            ("x-dlq-failed-at", datetime.now(UTC).isoformat().encode()),
        ]
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        error = f"{type(exc).__name__}: {exc}"
        log.error("dead-lettering %s: %s", where, _utf8_within(error, DLQ_ERROR_BYTES).decode())
        forms = dead_letter_forms(record, error, facts)
        form = next(forms)
        budget = self._producer.max_request_size
        if form.size > budget:
            full = form.size
            while form.size > budget and (smaller := next(forms, None)) is not None:
                form = smaller
            log.warning(
                "the dead letter of %s would be %d bytes, over max_request_size %d: sending it in %d bytes (%s)",
                where,
                full,
                budget,
                form.size,
                _left_out(form),
            )

        async def send() -> None:
            nonlocal form
            while True:
                try:
                    await self._producer.send_and_wait(
                        dlq_topic(self.service), value=form.value, key=form.key, headers=form.headers
                    )
                    return
                except RECORD_TOO_LARGE_ERRORS as too_large:
                    smaller = next(forms, None)
                    if smaller is None:
                        raise
                    log.warning(
                        "the dead letter of %s was refused as too large (%s): sending it in %d bytes (%s)",
                        where,
                        too_large,
                        smaller.size,
                        _left_out(smaller),
                    )
                    form = smaller

        await self._retry_transient(send)
        METRICS.dead_letters.labels(self.consumer).inc()
        METRICS.events_processed.labels(self.consumer, "dead-lettered").inc()


def _left_out(form: DeadLetterForm) -> str:
    """What a dead letter's form left out, for a log line."""
    names = {
        "x-dlq-value-omitted": "value",
        "x-dlq-headers-omitted": "original headers",
        "x-dlq-key-omitted": "key",
    }
    left_out = [label for name, label in names.items() if any(header == name for header, _ in form.headers)]
    return "without its " + ", ".join(left_out) if left_out else "the error trimmed"


MAX_BATCH = 200
"""Records handled in one transaction at most; also the most a consumer fetches at once."""

FETCH_MIN_BYTES_IN_WINDOW = 256 * 1024
"""With a batch window, what the broker gathers before it answers a fetch early: about a full batch."""


class OffsetCommits:
    """Commits a consumer's offsets once the records before them have their outcomes stored, at most
    every `interval` seconds (0: after every batch).

    Each commit names its offsets explicitly (the record after the last one stored, per partition),
    never the consumer's current position, which may already be past a batch still in its transaction.
    Committing less often than every batch saves a broker round trip per batch, which at a moderate
    rate (a record or two per batch) is most of what the broker does for a consumer
    (docs/performance.md). After a crash or a rebalance at most `interval` seconds of records are
    read again, and the inbox skips them."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def stored(self, consumer: Any, records: Sequence[Record]) -> None:
        """The outcomes of these records are committed in the database: their offsets may go."""
        for record in records:
            self._pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._consumer = consumer
        wait = self._interval - (time.monotonic() - self._last)
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_after(wait))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        self._last = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the records are re-read and skipped by the inbox
            # A rebalance took the partition: the next owner re-reads it and the inbox skips it.
            log.warning("offset commit failed (%s); the records will be re-read and skipped", exc)


def subscribe(
    broker: KafkaBroker,
    processor: EventProcessor,
    topics: Sequence[str],
    *,
    group_id: str,
    description: str,
    commit_interval: float = 0.0,
    batch_window_ms: int = 0,
) -> None:
    """Wire a processor to a FastStream batch subscriber; offsets are committed (manual
    acknowledgement) only after every record of the batch has its outcome stored, at most every
    `commit_interval` seconds (:class:`OffsetCommits`)."""
    commits = OffsetCommits(commit_interval)

    async def raw(message: Any) -> Any:
        # The handler gets the message itself as its body. Both are coroutines and the handler takes no
        # injected `KafkaMessage`: FastStream runs a plain-function decoder, and the injection of the
        # message, in a worker thread, a thread hop per batch (docs/performance.md).
        return message

    @broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        batch=True,
        max_records=MAX_BATCH,
        # With a window, the broker answers a fetch once it holds a full batch's bytes or the window has
        # passed; without, as soon as it has a record (and holds an idle fetch for up to 500 ms).
        fetch_min_bytes=FETCH_MIN_BYTES_IN_WINDOW if batch_window_ms > 0 else 1,
        fetch_max_wait_ms=batch_window_ms if batch_window_ms > 0 else 500,
        decoder=raw,
        title=f"{processor.consumer}:subscribe",
        description=description,
    )
    async def on_batch(msg: Any) -> None:
        records: Sequence[Any] = msg.raw_message
        if not isinstance(records, Sequence):
            records = [records]
        await processor.process_batch(records)
        consumer = getattr(msg, "consumer", None)
        if consumer is None or not records:  # FastStream's test client has no real consumer
            await msg.ack()
        else:
            await commits.stored(consumer, records)
        last: dict[tuple[str, int], Any] = {(record.topic, record.partition): record for record in records}
        for record in last.values():
            record_lag(group_id, getattr(msg, "consumer", None), record)


async def measure_lag(group_id: str, consumer: Any) -> None:
    """Set `proposalflow_consumer_lag` for every partition assigned to `consumer`: end offset minus the
    group's committed offset. Unlike :func:`record_lag` this sees a consumer stuck on a record."""
    partitions = list(consumer.assignment())
    if not partitions:
        return
    ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        committed = await consumer.committed(partition)
        if committed is None:  # nothing committed yet: the group starts from the earliest offset
            committed = (await consumer.beginning_offsets([partition]))[partition]
        lag = max(0, ends[partition] - committed)
        METRICS.consumer_lag.labels(group_id, partition.topic, str(partition.partition)).set(lag)


def record_lag(group_id: str, consumer: Any, record: Any) -> None:
    """Set `proposalflow_consumer_lag` for the record's partition from the consumer's high watermark."""
    highwater = getattr(consumer, "highwater", None)
    if highwater is None:  # FastStream's test client has no real consumer
        return
    end = highwater(TopicPartition(record.topic, record.partition))
    if end is None:
        return
    METRICS.consumer_lag.labels(group_id, record.topic, str(record.partition)).set(max(0, end - record.offset - 1))
