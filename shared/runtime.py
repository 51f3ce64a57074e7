"""The running parts of one service: database, outbox relay, Kafka subscribers and the HTTP app.

A service's `app.py` builds a :class:`ServiceRuntime`, registers its consumers and routers, and
hands the FastAPI app to uvicorn. The broker connects in the background: if Kafka is down at start,
the HTTP API still accepts work into the outbox and `/readyz` says the broker is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError
from fastapi import APIRouter, FastAPI
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.asyncapi import complete as complete_asyncapi
from shared.backoff import backoff_delay
from shared.db import create_engine, ping
from shared.envelope import Envelope
from shared.events import Event, dlq_topic
from shared.http import document_problems, install_error_handlers, install_health_routes, install_middleware
from shared.kafka_access import ACL_GUIDE, connection_problem, consumer_access_problems
from shared.observability import configure_tracing
from shared.offsets import measure_lag
from shared.processor import EventProcessor, Handler, Record
from shared.producer import KafkaPublisher, kafka_user
from shared.relay import OutboxRelay
from shared.settings import CommonSettings, ServiceSettings, service_settings
from shared.subscriber import subscribe
from shared.topics import create_topics

log = logging.getLogger("proposalflow.runtime")

# How often consumer lag is measured against the brokers (besides after every record processed).
CONSUMER_LAG_INTERVAL_S = 30.0


NEW_TOPICS_FOUND_WITHIN_MS = 60_000
"""How often the consumers refresh the brokers' metadata (aiokafka: 5 minutes): an outside system's topic
made while a service runs is read, from its first record, within this time (shared/subscriber.py)."""


def make_broker(
    common: CommonSettings, *, service: str, metadata_max_age_ms: int = NEW_TOPICS_FOUND_WITHIN_MS
) -> KafkaBroker:
    """The FastStream broker: subscribers and the AsyncAPI document; security passes through."""
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    security: BaseSecurity | None = None
    ssl_context = None
    if common.kafka_security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=common.kafka_ssl_cafile)
    if common.kafka_sasl_mechanism:
        user, password = common.kafka_sasl_username or "", common.kafka_sasl_password or ""
        mechanism = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
        security = mechanism[common.kafka_sasl_mechanism](user, password, ssl_context=ssl_context)
    elif ssl_context is not None:
        security = BaseSecurity(ssl_context=ssl_context)
    logger = logging.getLogger(f"proposalflow.{service}.broker")
    for known in list(logger.filters):
        if isinstance(known, _TopicsMadeElsewhere | ConsumerRefusals):
            logger.removeFilter(known)
    logger.addFilter(_TopicsMadeElsewhere())
    logger.addFilter(ConsumerRefusals(kafka_user(common)))
    return KafkaBroker(
        # A list: FastStream takes a string for one host, so "a:9092,b:9092" would be one bad address.
        [server.strip() for server in common.kafka_bootstrap_servers.split(",") if server.strip()],
        client_id=f"proposalflow-{service}",
        security=security,
        description=f"ProposalFlow {service} service",
        # The published document names the broker by role, not by this machine's address.
        specification_url="kafka-bootstrap:9092",
        logger=logger,
        log_level=logging.DEBUG,
        # Topics are made before the subscribers start (ServiceRuntime._ensure_topics, or the migration Job),
        # with the configured partitions. FastStream's own attempt would make a missing one with a single
        # partition, and with a service's own Kafka user (no CREATE) warn about every topic it consumes.
        allow_auto_create_topics=False,
        metadata_max_age_ms=metadata_max_age_ms,
    )


class ConsumerRefusals(logging.Filter):
    """Turns FastStream's "Kafka error occurred" and its stack trace, which its consumer loop logs every 5 s
    while the brokers refuse it (an ACL revoked, or READ missing where DESCRIBE was granted), into a line
    that names the ACL. The loop goes on retrying: once granted, consuming resumes by itself."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, GroupAuthorizationFailedError):
            need = "READ on its consumer group"
        elif isinstance(error, TopicAuthorizationFailedError):
            need = "READ on the topics it consumes"
        else:
            return True
        record.msg = "Kafka refuses the consumers (%s): Kafka user %s needs %s (%s); retrying in 5s"
        record.args = (error, self.user, need, ACL_GUIDE)
        record.exc_info = None
        record.exc_text = None
        return True


class _TopicsMadeElsewhere(logging.Filter):
    """Drops FastStream's reminder, at every subscriber's start, that it creates no topics: the runtime
    does (and names a topic it cannot see or make)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auto create topics is disabled")


@dataclass
class ServiceRuntime:
    """Everything one service process runs."""

    name: str
    metadata: MetaData
    common: CommonSettings = field(default_factory=CommonSettings)
    settings: ServiceSettings | None = None
    publishes: Sequence[type[Event]] = ()

    def __post_init__(self) -> None:
        self.settings = self.settings or service_settings(self.name)
        self.engine = create_engine(self.settings.database_url)
        self.producer = KafkaPublisher(self.common, client_id=f"proposalflow-{self.name}")
        self.relay = OutboxRelay(
            self.engine,
            self.metadata,
            self.producer,
            batch_size=self.common.outbox_batch_size,
            poll_interval=self.common.outbox_poll_interval_s,
            service=self.name,
        )
        self.broker = make_broker(self.common, service=self.name)
        self.processors: list[EventProcessor] = []
        self._pattern_topics: list[str] = []
        """The topics of the subscriptions that read by pattern (those with inbound command topics, read with
        every outside system's own): the pattern hides them from the subscriber, the ACL check needs them."""
        self._tasks: list[asyncio.Task[None]] = []
        self._startup: list[Callable[[AsyncConnection], Awaitable[None]]] = []
        self._periodic: list[tuple[str, float, Callable[[], Awaitable[None]]]] = []
        self._broker_ready = False
        self._kafka_problem: str | None = None
        """Why the brokers refuse this service (credentials, TLS, an ACL), for the log and `/readyz`."""
        self._declare_publishers()
        self.every(CONSUMER_LAG_INTERVAL_S, self.measure_lag, name="consumer-lag")

    @property
    def service_settings(self) -> ServiceSettings:
        assert self.settings is not None
        return self.settings

    def _declare_publishers(self) -> None:
        """Declare what this service publishes, per topic, so the AsyncAPI document shows it."""
        by_topic: dict[str, list[type[Event]]] = {}
        for event in self.publishes:
            by_topic.setdefault(event.TOPIC, []).append(event)
        for topic, events in by_topic.items():
            schema: Any = events[0]
            for other in events[1:]:
                schema = schema | other
            names = ", ".join(event.TYPE for event in events)
            self.broker.publisher(
                topic, title=f"{topic}:publish", description=f"CloudEvents types: {names}", schema=schema
            )

    def consume(
        self,
        topics: Sequence[str],
        handler: Handler,
        *,
        consumer: str | None = None,
        description: str = "",
        dedupe_key: Callable[[Envelope, Record], str] | None = None,
        prepare: Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[None]] | None = None,
        per_system: bool = False,
        finish: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> EventProcessor:
        """Run `handler` for every event on `topics`, in this service's consumer group; `prepare` first in
        each of its transactions, with the batch's envelopes, and `finish` last (EventProcessor); with
        `per_system`, `topics` are inbound command topics, read together with every outside system's own."""
        processor = EventProcessor(
            service=self.name,
            consumer=consumer or self.name,
            engine=self.engine,
            metadata=self.metadata,
            handler=handler,
            producer=self.producer,
            after_commit=self.relay.wake,
            dedupe_key=dedupe_key,
            retry_attempts=self.common.retry_attempts,
            base_delay=self.common.retry_base_delay_s,
            max_delay=self.common.retry_max_delay_s,
            prepare=prepare,
            finish=finish,
            after_handled=lambda subjects: self._handled(processor, subjects),
        )
        self.processors.append(processor)
        for each in self.processors:
            each.look_after(self.processors)
        self.subscribe(
            processor,
            [] if per_system else topics,
            inbound=topics if per_system else (),
            description=description or f"{self.name} consumes {', '.join(topics)}",
        )
        return processor

    def _handled(self, by: EventProcessor, subjects: Iterable[str]) -> None:
        """One consumer committed records of these proposals: what the others parked of them may go now
        (progress's unit commands wait for the assignment its lifecycle consumer reads)."""
        subjects = tuple(subjects)
        for processor in self.processors:
            if processor is not by:
                processor.rerun_soon(subjects)

    def subscribe(
        self, processor: EventProcessor, topics: Sequence[str], *, inbound: Sequence[str] = (), description: str
    ) -> None:
        """Feed `processor` from `topics` and the `inbound` command topics with every outside system's own
        (shared/subscriber.py), in this service's consumer group."""
        if inbound:
            self._pattern_topics.extend(name for name in [*inbound, *topics] if name not in self._pattern_topics)
        subscribe(
            self.broker,
            processor,
            topics,
            group_id=self.service_settings.consumer_group,
            description=description,
            commit_interval=self.common.offset_commit_interval_s,
            batch_window_ms=self.service_settings.batch_window_ms,
            inbound=inbound,
        )

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of this service, generated by FastStream."""
        app = FastStream(
            self.broker,
            specification=AsyncAPI(
                title=f"ProposalFlow {self.name}",
                version="1.0.0",
                schema_version="3.0.0",
                description=f"Events the {self.name} service consumes and publishes (CloudEvents 1.0, binary mode).",
            ),
        )
        document: dict[str, Any] = app.schema.to_specification().to_jsonable()
        return complete_asyncapi(document)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One database transaction; events staged in it go out as soon as it commits."""
        async with self.engine.begin() as conn:
            yield conn
        self.relay.wake()

    async def _connect_kafka(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.producer.start()
                break
            except Exception as exc:  # noqa: BLE001 - the broker may come later; keep trying
                delay = backoff_delay(attempt, 0.5, 10.0)
                problem = await self._refusal(exc)
                if problem:
                    log.error("Kafka refuses %s: %s; trying again in %.1fs", self.name, problem, delay)
                else:
                    log.warning("Kafka producer not connected (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        self._kafka_problem = None
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        await self._ensure_topics()
        await self._wait_for_consumer_access()
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.broker.start()
                break
            except Exception as exc:  # noqa: BLE001
                delay = backoff_delay(attempt, 0.5, 10.0)
                log.warning("Kafka consumers not started (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await asyncio.sleep(delay)
        self._broker_ready = True
        for processor in self.processors:
            await processor.rerun_all_parked()
        log.info("%s connected to Kafka at %s", self.name, self.common.kafka_bootstrap_servers)

    async def _refusal(self, exc: Exception) -> str | None:
        """Why the brokers refused to connect, when they answered at all (kept for `/readyz`)."""
        problem = None
        if isinstance(exc, KafkaConnectionError):
            try:
                problem = await connection_problem(self.common)
            except Exception:
                log.debug("could not diagnose the Kafka connection", exc_info=True)
        self._kafka_problem = problem
        return problem

    def consumed_topics(self) -> list[str]:
        """Every topic this service's subscribers read: by name, or by a pattern (then the shared inbound
        topics stand for every outside system's own, which their prefix ACL covers)."""
        names: list[str] = list(self._pattern_topics)
        for subscriber in self.broker.subscribers:
            for topic in getattr(subscriber, "topics", []):
                name = getattr(topic, "name", topic)
                if isinstance(name, str) and name not in names:
                    names.append(name)
        return names

    async def _wait_for_consumer_access(self) -> None:
        """Until this service's Kafka user may read its topics and use its consumer group. Without them the
        consumers would log the same stack trace every few seconds; this names the missing ACL instead,
        once per try, and `/readyz` says it. Nothing is lost meanwhile: the records wait on their topics,
        and HTTP requests in the outbox."""
        topics = self.consumed_topics()
        if not topics:
            return
        group = self.service_settings.consumer_group
        attempt = 0
        while True:
            attempt += 1
            try:
                problems = await consumer_access_problems(self.common, topics=topics, group=group)
            except Exception as exc:  # noqa: BLE001 - the consumers will meet (and retry) whatever this was
                log.debug("could not check the consumers' Kafka access (%s)", exc)
                problems = []
            if not problems:
                if self._kafka_problem:
                    log.info("%s may now consume %s in group %s", self.name, ", ".join(topics), group)
                self._kafka_problem = None
                return
            self._kafka_problem = "; ".join(problems)
            delay = backoff_delay(attempt, 1.0, 10.0)
            log.error(
                "Kafka refuses %s's consumers: %s; checking again in %.1fs", self.name, self._kafka_problem, delay
            )
            await asyncio.sleep(delay)

    def _topics_used(self) -> set[str]:
        return {*self.consumed_topics(), *(event.TOPIC for event in self.publishes), dlq_topic(self.name)}

    async def _ensure_topics(self) -> None:
        """Create the missing topics with the configured partitions and replication, before the
        subscribers start: FastStream's subscribers create a missing topic with ONE partition, and on a
        fresh cluster the first service to start would fix every topic at one partition, so replicas
        could never share the work. An init job (`proposalflow topics create`) normally did this already;
        without the rights to create topics, the service goes on and says so. A Kafka user that may not
        describe other services' topics sees them as missing and may not create them: expected with one
        user per service, so only this service's own topics are worth a warning."""
        try:
            created = await create_topics(
                self.common, self.common.topic_partitions, self.common.topic_replication_factor
            )
        except Exception as exc:  # noqa: BLE001 - topics may be managed elsewhere; consuming still works
            log.warning("could not check or create the topics (%s); make sure they exist", exc)
            return
        made = sorted(name for name, state in created.items() if state == "created")
        if made:
            log.info("created topics %s with %d partitions", ", ".join(made), self.common.topic_partitions)
        refused = sorted(name for name, state in created.items() if state.startswith("refused"))
        mine = [name for name in refused if name in self._topics_used()]
        if mine:
            log.warning(
                "Kafka user %s cannot see topics %s of this service, nor create them: grant it its ACLs (%s), and "
                "create missing topics with `proposalflow topics create` as a user who may",
                self.producer.user,
                ", ".join(mine),
                ACL_GUIDE,
            )

    async def measure_lag(self) -> None:
        """Consumer lag of every subscriber's assigned partitions (`proposalflow_consumer_lag`)."""
        if not self._broker_ready:
            return
        for subscriber in self.broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is not None:
                await measure_lag(self.service_settings.consumer_group, consumer)

    def on_startup(self, action: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        """Run `action` in a transaction when the service starts (e.g. seeding a catalog)."""
        self._startup.append(action)

    def every(self, seconds: float, job: Callable[[], Awaitable[None]], *, name: str | None = None) -> None:
        """Run `job` every `seconds` while the service runs, the first time at start. A failing run is
        logged and the next one tries again; with several replicas every replica runs it, so a job must be
        safe to run concurrently (conditional updates, deterministic event ids)."""
        self._periodic.append((name or str(getattr(job, "__name__", "job")), seconds, job))

    async def _repeat(self, name: str, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await job()
            except Exception:  # a periodic job must outlive one bad run
                log.exception("periodic job %s failed; next run in %.0fs", name, seconds)
            await asyncio.sleep(seconds)

    async def start(self) -> None:
        configure_tracing(self.name, self.common)
        for action in self._startup:
            async with self.transaction() as conn:
                await action(conn)
        for name, seconds, job in self._periodic:
            self._tasks.append(asyncio.create_task(self._repeat(name, seconds, job), name=f"{self.name}-{name}"))
        self._tasks.append(asyncio.create_task(self._connect_kafka(), name=f"{self.name}-kafka"))

    async def stop(self) -> None:
        self.relay.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for processor in self.processors:
            await processor.stop_reruns()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(self.engine), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self._kafka_problem:
            checks["broker"] = f"unavailable: {self._kafka_problem}"
        elif not self._broker_ready:
            checks["broker"] = "unavailable: not connected yet"
        else:
            try:
                alive = await self.broker.ping(timeout=3)
                checks["broker"] = "ok" if alive else "unavailable: no answer"
            except Exception as exc:  # noqa: BLE001
                checks["broker"] = f"unavailable: {type(exc).__name__}"
        return checks

    def http_app(self, routers: Sequence[APIRouter], *, title: str, description: str) -> FastAPI:
        """The service's FastAPI app; the broker starts and stops in its lifespan."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
        install_error_handlers(app)
        document_problems(app)
        install_middleware(
            app, max_body_bytes=self.common.http_max_body_bytes, max_json_depth=self.common.http_max_json_depth
        )
        install_health_routes(app, self.readiness)
        for router in routers:
            app.include_router(router)
        app.state.runtime = self
        app.state.common_settings = self.common
        return app
