"""Which Kafka errors say 'never' and which 'not now'."""

from __future__ import annotations

import inspect

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
    RequestTimedOutError,
    UnknownError,
    UnknownTopicOrPartitionError,
)

from shared.messaging import (
    PERMANENT_KAFKA_ERRORS,
    is_transient,
)

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
