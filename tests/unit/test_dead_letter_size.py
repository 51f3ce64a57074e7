"""Which Kafka errors say 'never' and which 'not now', and the smaller forms of a dead letter too large to
send whole (see tests/integration/test_large_dead_letters.py for the same on the real broker)."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as kafka_errors
import pytest
from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownError,
    UnknownTopicOrPartitionError,
)

from services.intake import store
from shared.db import create_engine
from shared.dlq import DLQ_ERROR_BYTES, DLQ_TRIMMED_ERROR_BYTES, dead_letter_forms
from shared.dlq import _dead_letter as read_dead_letter
from shared.errors import PermanentError
from shared.failures import PERMANENT_KAFKA_ERRORS, is_transient
from shared.processor import EventProcessor
from shared.producer import record_size
from tests.fakes import FakeRecord, RecordingPublisher

SMALLEST_LIMIT = 65_536
"""The smallest `PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE` the settings accept."""

FACTS = [("x-dlq-consumer", b"intake"), ("x-dlq-original-topic", b"proposalflow.submissions")]

KAFKA_ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(kafka_errors, inspect.isclass)
    if issubclass(cls, KafkaError) and cls is not kafka_errors.NoError
]


# Which errors are permanent --------------------------------------------------------------------------


@pytest.mark.parametrize("error", PERMANENT_KAFKA_ERRORS, ids=lambda cls: cls.__name__)
def test_an_error_that_says_never_is_not_transient(error: type[KafkaError]) -> None:
    assert not is_transient(error("refused"))


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError,
        KafkaTimeoutError,  # what send_and_wait raises while the broker is down; aiokafka: not retriable
        BrokerNotAvailableError,  # likewise
        NodeNotReadyError,
        RequestTimedOutError,
        NotLeaderForPartitionError,
        LeaderNotAvailableError,
        NotEnoughReplicasError,
        UnknownTopicOrPartitionError,
        UnknownError,
        KafkaError,
    ],
    ids=lambda cls: cls.__name__,
)
def test_what_a_broker_outage_raises_stays_transient(error: type[KafkaError]) -> None:
    assert is_transient(error("broker down"))


@pytest.mark.parametrize("error", [cls for cls in KAFKA_ERROR_CLASSES if cls.retriable], ids=lambda cls: cls.__name__)
def test_every_error_aiokafka_would_retry_is_transient(error: type[KafkaError]) -> None:
    assert is_transient(error())


def test_the_permanent_errors_are_ones_aiokafka_would_not_retry() -> None:
    assert [cls.__name__ for cls in PERMANENT_KAFKA_ERRORS if cls.retriable] == []


# The forms of a dead letter -------------------------------------------------------------------------


def test_each_form_is_smaller_and_the_last_fits_the_smallest_limit_whatever_the_record() -> None:
    key, value = b"k" * 300_000, b"v" * 300_000
    headers = [(f"h{n}", b"x" * 10_000) for n in range(30)]
    record = FakeRecord("proposalflow.submissions", 3, 42, key, value, headers)
    forms = list(dead_letter_forms(record, "PermanentError: " + "e" * 10_000, FACTS))
    sizes = [form.size for form in forms]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 5
    assert sizes[-1] < 2_000 < SMALLEST_LIMIT
    whole, trimmed, no_value, no_headers, bare = (dict(form.headers) for form in forms)
    assert len(whole["x-dlq-error"]) == DLQ_ERROR_BYTES
    assert len(trimmed["x-dlq-error"]) == DLQ_TRIMMED_ERROR_BYTES
    assert forms[2].value is None and forms[2].key == key and forms[2].headers[: len(headers)] == headers
    assert no_value["x-dlq-value-omitted"] == b"300000"
    assert no_value["x-dlq-value-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert no_headers["x-dlq-headers-omitted"] == b"30" and "h0" not in no_headers
    assert forms[4].key is None and bare["x-dlq-key-omitted"] == b"300000"
    for form in forms:
        assert dict(form.headers)["x-dlq-original-topic"] == b"proposalflow.submissions"


def test_a_form_that_would_leave_nothing_out_is_skipped() -> None:
    record = FakeRecord("t", 0, 1, None, None, [])
    assert len(list(dead_letter_forms(record, "EnvelopeError: empty", FACTS))) == 2


def test_a_trimmed_error_never_cuts_a_character_in_two() -> None:
    record = FakeRecord("t", 0, 1, None, b"v", [])
    error = "PermanentError: " + "理由过长" * 2000
    for form in dead_letter_forms(record, error, FACTS):
        text = dict(form.headers)["x-dlq-error"].decode()  # strict: raises on half a character
        assert text.startswith("PermanentError: 理由") and text.endswith("…")


def test_a_form_without_its_value_reads_back_as_one_that_left_it_out() -> None:
    record = FakeRecord("proposalflow.submissions", 2, 9, b"p-1", b"v" * 100, [("ce_id", b"e-1")])
    form = list(
        dead_letter_forms(record, "E: x", [*FACTS, ("x-dlq-original-partition", b"2"), ("x-dlq-original-offset", b"9")])
    )[2]

    @dataclass
    class Consumed:
        key: bytes | None
        value: bytes | None
        headers: list[tuple[str, bytes]]
        offset: int = 0
        partition: int = 0

    letter = read_dead_letter(Consumed(form.key, form.value, form.headers))
    assert letter.omitted == ["value"]
    assert letter.value_omitted == 100
    assert letter.original_at == "proposalflow.submissions[2]@9"
    assert letter.original_headers == [("ce_id", b"e-1")]


# The processor sends the form that fits --------------------------------------------------------------


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[Any]:
    engine = create_engine(sqlite_url)  # never reached: an undecodable record is dead-lettered at once
    yield engine
    await engine.dispose()


def processor(engine: Any, publisher: Any) -> EventProcessor:
    async def never(*_args: Any) -> None:
        raise AssertionError("an undecodable record never reaches the handler")

    return EventProcessor(
        service="intake",
        consumer="intake",
        engine=engine,
        metadata=store.metadata,
        handler=never,
        producer=publisher,
        base_delay=0.001,
        max_delay=0.01,
    )


def undecodable(value_size: int) -> FakeRecord:
    """Not a CloudEvent (no `ce_*` headers): dead-lettered without a retry or a database."""
    return FakeRecord("proposalflow.submissions", 0, 5, b"p-1", b"x" * value_size, [("trace", b"t" * 3000)])


async def test_a_letter_over_the_producers_limit_is_sent_without_its_value(engine: Any) -> None:
    publisher = RecordingPublisher(max_request_size=SMALLEST_LIMIT)
    record = undecodable(SMALLEST_LIMIT - 100)
    assert await processor(engine, publisher).process(record) == "dead-lettered"
    [letter] = publisher.sent
    assert letter.value is None and letter.key == b"p-1"
    assert dict(letter.headers)["x-dlq-value-omitted"] == str(SMALLEST_LIMIT - 100).encode()
    assert dict(letter.headers)["trace"] == b"t" * 3000
    assert record_size(letter.key, letter.value, letter.headers) <= SMALLEST_LIMIT


async def test_a_letter_just_over_the_limit_keeps_its_value_and_trims_its_error(engine: Any) -> None:
    publisher = RecordingPublisher(max_request_size=SMALLEST_LIMIT)
    record = undecodable(SMALLEST_LIMIT - 5_000)  # whole, with a long error: over; the error trimmed: under
    await processor(engine, publisher)._dead_letter(record, PermanentError("e" * 10_000), attempts=5)
    [letter] = publisher.sent
    assert letter.value == record.value
    assert "x-dlq-value-omitted" not in dict(letter.headers)
    assert len(dict(letter.headers)["x-dlq-error"]) == DLQ_TRIMMED_ERROR_BYTES


async def test_a_broker_that_refuses_the_letter_as_too_large_gets_a_smaller_one(engine: Any) -> None:
    publisher = RecordingPublisher(broker_limit=20_000)
    assert await processor(engine, publisher).process(undecodable(50_000)) == "dead-lettered"
    [letter] = publisher.sent
    assert letter.value is None


@dataclass
class RefusingPublisher(RecordingPublisher):
    """Refuses with an error that is not about size a few times (an ACL not granted yet), then accepts."""

    refusals: int = 3
    error: type[Exception] = TopicAuthorizationFailedError

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if self.refusals:
            self.refusals -= 1
            raise self.error("not allowed on the dead-letter topic")
        return await super().send(topic, **kwargs)


@pytest.mark.parametrize("error", [TopicAuthorizationFailedError, KafkaTimeoutError])
async def test_a_letter_the_broker_refuses_for_another_reason_is_retried_never_dropped(
    engine: Any, error: type[Exception]
) -> None:
    publisher = RefusingPublisher(error=error)
    assert await processor(engine, publisher).process(undecodable(10)) == "dead-lettered"
    assert publisher.refusals == 0
    [letter] = publisher.sent
    assert letter.value == b"x" * 10


async def test_a_too_large_error_that_no_form_escapes_is_retried_not_dropped(engine: Any) -> None:
    """A broker limit below even the smallest form: the letter waits (logged), as in an outage."""

    @dataclass
    class TinyBroker(RecordingPublisher):
        refusals: int = 12

        async def send(self, topic: str, **kwargs: Any) -> Any:
            if self.refusals:
                self.refusals -= 1
                raise RecordTooLargeError("the broker's limit is tiny")
            return await super().send(topic, **kwargs)

    publisher = TinyBroker()
    assert await processor(engine, publisher).process(undecodable(100)) == "dead-lettered"
    assert publisher.refusals == 0 and len(publisher.sent) == 1
