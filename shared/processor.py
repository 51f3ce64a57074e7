"""Reading (DESIGN.md §4): the inbox, retries, parked events and dead letters around a consumer's handler.

:class:`EventProcessor` never raises: decode → inbox (skip a duplicate) → handler, all in
one database transaction → then the caller commits the offset (shared/offsets.py). A batch of records
shares one transaction when every record goes the ordinary way; otherwise its records go one at a time.
A transient failure (database or broker down) is retried with capped backoff for as long as it
takes; any other failure is retried a few times and then dead-lettered (shared/dlq.py), and the
partition moves on. A handler that needs an event it has not seen yet raises :class:`NotReady`: the
record is parked and re-run after the next event of the same subject, whichever consumer of the process
handles it (:meth:`EventProcessor.rerun_soon`), and by a periodic sweep.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import MetaData, Table, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.backoff import backoff_delay
from shared.db import built_once, driver_connection, insert_new
from shared.dlq import DLQ_ERROR_BYTES, dead_letter_forms, left_out, utf8_within
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.errors import NotReady, PermanentError
from shared.events import dlq_topic
from shared.failures import RECORD_TOO_LARGE_ERRORS, is_transient
from shared.observability import METRICS, bind_context, kafka_attributes, traced
from shared.outbox import staged_events
from shared.producer import KafkaPublisher

log = logging.getLogger("proposalflow.messaging")
"""Every part of the delivery plumbing logs under one name, as when it was one module."""


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
        after_handled: Callable[[Iterable[str]], None] = lambda _subjects: None,
    ) -> None:
        """`prepare` and `finish` are for handlers that work faster by the batch: `prepare` runs first in
        each transaction with the envelopes about to be handled (to read what they need in one query),
        `finish` runs last in each transaction that handled something (to write what they deferred).
        Both run in every transaction that calls the handler, a batch's or a single record's. A handler
        may carry them itself, as attributes of the same names (services/audit/handlers.py).
        `after_handled` is told, after each commit, the proposals whose records were handled (the service's
        runtime passes them to its other consumers' :meth:`rerun_soon`)."""
        self.service = service
        self.consumer = consumer
        self._engine = engine
        self._inbox = metadata.tables["inbox"]
        self._parked = metadata.tables["parked_events"]
        self._admit_sql = admit_sql(self._inbox, self._parked)
        self._parked_sql = (
            f"SELECT DISTINCT consumer, subject FROM {self._parked.name} "  # noqa: S608 - our own table
            "WHERE consumer = ANY($1::varchar[]) AND subject = ANY($2::varchar[])"
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
        self._after_handled = after_handled
        self._parked_here: set[str] = set()
        """Proposals this process parked records of and has not seen drained since."""
        self._reruns: set[asyncio.Task[None]] = set()
        self._siblings: dict[str, EventProcessor] = {}
        """The other consumers of this service (:meth:`look_after`)."""

    def look_after(self, siblings: Iterable[EventProcessor]) -> None:
        """On PostgreSQL, the look for parked records after each commit covers these consumers of the same
        service too, in the same statement: a record another replica parked waiting for what this commit
        holds (a unit's command for its proposal's assignment) is re-run now, not at the next sweep.
        Within one process :meth:`rerun_soon` does that; across replicas only this look can."""
        self._siblings = {sibling.consumer: sibling for sibling in siblings if sibling is not self}

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
            **kafka_attributes(record.topic),
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
                        **kafka_attributes(record.topic),
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
        if handled:
            self._after_handled(handled)
        if handled and self._engine.dialect.name != "sqlite":
            # Another replica may have parked, while this transaction ran, an event of these proposals
            # that was waiting for them (a replica re-runs what it parks at once, but that may have been
            # before this commit). On SQLite transactions never overlap: a record parked after this
            # commit is re-run by whoever parked it, and sees this commit; one parked before it was seen
            # by the check at the start of the transaction.
            async with self._engine.connect() as conn:
                # Outside a transaction: one round trip, on asyncpg's own connection.
                driver = await driver_connection(conn)
                found = await driver.fetch(self._parked_sql, [self.consumer, *self._siblings], sorted(handled))
            waiting = sorted((row[0], row[1]) for row in found)
            for consumer, subject in waiting:
                if consumer == self.consumer:
                    await self._rerun_parked(subject)
                else:
                    self._siblings[consumer].rerun_soon([subject], parked_anywhere=True)
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
        if outcome == "handled" and envelope.subject:
            self._after_handled([envelope.subject])
        return outcome

    async def _first_time(self, conn: AsyncConnection, event_key: str) -> bool:
        """Record (consumer, key); by default the key is source|id, as a CloudEvent is unique by both."""
        values = {"consumer": self.consumer, "event_id": event_key, "received_at": datetime.now(UTC)}
        result = await conn.execute(insert_new(self._inbox, conn.dialect.name), values)
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
            lambda: insert_new(self._inbox, dialect).returning(self._inbox.c.event_id),
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
        if envelope.subject:
            self._parked_here.add(envelope.subject)

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
            if not rows:
                self._parked_here.discard(subject)
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

    def rerun_soon(self, subjects: Iterable[str], *, parked_anywhere: bool = False) -> None:
        """Another consumer of this process has just committed records of these proposals: re-run now, in
        the background, what this one parked of them. A unit's command that came before its proposal's
        assignment waits for the assignment, which another consumer reads; without this it would wait
        for the next sweep (:meth:`rerun_all_parked`). Only proposals this process parked, unless the database
        has just shown a parked record of them (`parked_anywhere`, perhaps another replica's: :meth:`look_after`);
        the sweep covers the rest and those from before a restart."""
        for subject in subjects:
            if subject not in self._parked_here and not parked_anywhere:
                continue
            task = asyncio.get_running_loop().create_task(
                self._rerun_parked(subject), name=f"{self.consumer} rerun {subject}"
            )
            self._reruns.add(task)
            task.add_done_callback(self._rerun_done)

    async def reruns_finished(self) -> None:
        """Wait until the background re-runs :meth:`rerun_soon` started have committed or failed (a
        failed one stays parked for the sweep)."""
        await asyncio.gather(*list(self._reruns), return_exceptions=True)

    async def stop_reruns(self) -> None:
        """Cancel the background re-runs :meth:`rerun_soon` started and wait for them, before the engine
        goes: a re-run cut short leaves its record parked (its transaction rolls back), and the start-up
        sweep runs it again."""
        reruns = list(self._reruns)
        for task in reruns:
            task.cancel()
        await asyncio.gather(*reruns, return_exceptions=True)

    def _rerun_done(self, task: asyncio.Task[None]) -> None:
        self._reruns.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The sweep tries again; a database outage is the usual cause.
            log.warning("re-running parked records failed (%r); the next sweep tries again", task.exception())

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
        log.error("dead-lettering %s: %s", where, utf8_within(error, DLQ_ERROR_BYTES).decode())
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
                left_out(form),
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
                        left_out(smaller),
                    )
                    form = smaller

        await self._retry_transient(send)
        METRICS.dead_letters.labels(self.consumer).inc()
        METRICS.events_processed.labels(self.consumer, "dead-lettered").inc()
