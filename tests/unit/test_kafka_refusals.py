"""What an operator reads when the brokers refuse a service: the setting or the ACL to fix, named."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from shared.kafka_access import connection_problem
from shared.producer import kafka_user, write_refused_hint
from shared.runtime import make_broker
from shared.settings import CommonSettings
from tests.procs import free_port


def test_a_refused_write_names_the_user_the_topic_and_the_acl() -> None:
    hint = write_refused_hint(
        TopicAuthorizationFailedError("proposalflow.proposals"),
        user="User:proposalflow-intake",
        topic="proposalflow.proposals",
    )
    assert hint.startswith("Kafka user User:proposalflow-intake may not write topic proposalflow.proposals")
    assert "grant it WRITE on topic proposalflow.proposals" in hint


def test_an_idempotent_producer_without_any_write_acl_is_told_what_to_grant() -> None:
    hint = write_refused_hint(ClusterAuthorizationFailedError(), user="User:x", topic="t")
    assert "idempotent producer" in hint and "WRITE on the topics it publishes" in hint


def test_other_refusals_get_no_acl_hint() -> None:
    assert write_refused_hint(KafkaConnectionError("down"), user="User:x", topic="t") == ""


def test_the_principal_is_the_sasl_user_when_there_is_one() -> None:
    settings = CommonSettings(kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="proposalflow-audit")
    assert kafka_user(settings) == "User:proposalflow-audit"
    assert "no SASL user" in kafka_user(CommonSettings())


async def test_a_broker_that_does_not_answer_is_an_outage_not_a_refusal() -> None:
    settings = CommonSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    assert await connection_problem(settings) is None


def test_a_consumer_refused_while_running_logs_the_acl_not_a_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    settings = CommonSettings(kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="proposalflow-notify")
    make_broker(settings, service="notify")
    logger = logging.getLogger("proposalflow.notify.broker")
    with caplog.at_level(logging.ERROR, logger="proposalflow.notify.broker"):
        # What FastStream's consumer loop logs, every 5 s, while the brokers refuse it.
        logger.error("Kafka error occurred", exc_info=GroupAuthorizationFailedError())
        logger.error("Kafka error occurred", exc_info=TopicAuthorizationFailedError("proposalflow.handling"))
        logger.error("Kafka error occurred", exc_info=KafkaConnectionError("down"))
    group, topic, other = caplog.records
    assert "Kafka user User:proposalflow-notify needs READ on its consumer group" in group.getMessage()
    assert group.exc_info is None
    assert "proposalflow.handling" in topic.getMessage() and "READ on the topics it consumes" in topic.getMessage()
    assert other.getMessage() == "Kafka error occurred" and other.exc_info is not None


def test_the_consumers_access_check_names_every_topic_even_those_read_by_pattern() -> None:
    """Audit and progress read the inbound topics by pattern (with every outside system's own), which hides
    all of a subscription's topics from FastStream's subscriber: the check before the consumers start
    still names each one (the shared inbound topics standing for the systems' own, under one prefix ACL)."""
    from services.audit.app import AUDITED_TOPICS
    from services.audit.app import runtime as audit
    from services.progress.app import runtime as progress

    inbound = {"proposalflow.submissions", "proposalflow.unit-reports", "proposalflow.leader-reports"}
    assert set(audit.consumed_topics()) == {*AUDITED_TOPICS, *inbound}
    assert "proposalflow.dlq.audit" not in audit.consumed_topics()
    assert set(progress.consumed_topics()) == {"proposalflow.proposals", "proposalflow.assignments", *inbound}
