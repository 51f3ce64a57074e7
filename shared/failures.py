"""Which failures are waited out and which are for good: :func:`is_transient` decides whether the relay
and the processor retry a failure for as long as it lasts (the database or the broker down) or give up on
the row or record (a failed outbox row, a dead letter)."""

from __future__ import annotations

import socket

import asyncpg  # type: ignore[import-untyped]
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InvalidTopicError,
    KafkaConfigurationError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedCodecError,
    UnsupportedForMessageFormatError,
)
from sqlalchemy.exc import DBAPIError, OperationalError

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
