"""Topic administration: every ProposalFlow topic, with its partitions and replication."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events import ALL_TOPICS, dlq_topic
from shared.messaging import kafka_client_options
from shared.settings import SERVICES, CommonSettings


def all_topic_names() -> list[str]:
    return [*ALL_TOPICS, *(dlq_topic(service) for service in SERVICES)]


async def create_topics(settings: CommonSettings, partitions: int, replication_factor: int) -> dict[str, str]:
    """Create the missing topics; returns each topic's state ("created" or "exists")."""
    admin = AIOKafkaAdminClient(client_id="proposalflow-admin", **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = all_topic_names()
        missing = [name for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(name, partitions, replication_factor) for name in missing])
            except TopicAlreadyExistsError:
                pass
        return {name: "created" if name in missing else "exists" for name in wanted}
    finally:
        await admin.close()
