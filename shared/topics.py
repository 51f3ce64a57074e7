"""Topic administration: every ProposalFlow topic, with its partitions and replication."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from shared.events import ALL_TOPICS, INBOUND_TOPICS, SYSTEM_NAME, dlq_topic, system_of_topic
from shared.producer import kafka_client_options, kafka_user
from shared.settings import SERVICES, CommonSettings


def all_topic_names() -> list[str]:
    return [*ALL_TOPICS, *(dlq_topic(service) for service in SERVICES)]


def outside_system_topic(name: str) -> str:
    """`name` if it is an outside system's own inbound topic (`proposalflow.unit-reports.<system>`,
    `proposalflow.submissions.<system>`); else ValueError saying what one looks like."""
    for inbound in INBOUND_TOPICS:
        system = system_of_topic(inbound, name)
        if system is not None and re.fullmatch(SYSTEM_NAME, system):
            return name
    shapes = " or ".join(f"{inbound}.<system>" for inbound in INBOUND_TOPICS)
    raise ValueError(f"{name!r} is not an outside system's topic: {shapes} (letters, digits, . _ -)")


async def create_topics(
    settings: CommonSettings, partitions: int, replication_factor: int, system_topics: Sequence[str] = ()
) -> dict[str, str]:
    """Create the missing topics, and the given outside systems' own inbound topics; returns each topic's
    state: "created", "exists", or "refused: <why>" (a Kafka user without CREATE on the topic or the
    cluster; a topic it may not describe looks missing)."""
    admin = AIOKafkaAdminClient(client_id="proposalflow-admin", **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [*all_topic_names(), *(outside_system_topic(name) for name in system_topics)]
        missing = [name for name in wanted if name not in existing]
        states = {name: "created" if name in missing else "exists" for name in wanted}
        if missing:
            try:
                response = await admin.create_topics(
                    [NewTopic(name, partitions, replication_factor) for name in missing]
                )
            except TopicAlreadyExistsError:
                return states
            for name, code, message in _topic_errors(response):
                error = for_code(code)
                if error is TopicAlreadyExistsError:
                    states[name] = "exists"
                elif error is TopicAuthorizationFailedError:
                    states[name] = (
                        f"refused: Kafka user {kafka_user(settings)} may not create it (grant CREATE on the "
                        "topic or the cluster, or create the topics as a user who may)"
                    )
                else:
                    states[name] = f"refused: {error.__name__}: {message or code}"
        return states
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of every topic a CreateTopics response names with an error."""
    errors = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code:
            errors.append((name, code, message))
    return errors
