"""The Kafka producer every service publishes with, and the client options every Kafka client shares.

:class:`KafkaPublisher` is an idempotent producer (`acks=all`); the outbox relay (shared/relay.py) and the
dead-letter writer (shared/processor.py) send through it. :func:`record_size` measures a record as the
producer will, so the outbox can refuse what the producer would (shared/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ClusterAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

if TYPE_CHECKING:
    from shared.settings import CommonSettings

log = logging.getLogger("proposalflow.messaging")
"""Every part of the delivery plumbing logs under one name, as when it was one module."""


DEFAULT_MAX_REQUEST_SIZE = 1_048_576
"""aiokafka's default `max_request_size`, and `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE`'s."""


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
