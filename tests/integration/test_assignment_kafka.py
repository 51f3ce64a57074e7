"""Assignment on the real broker: a ProposalFiled on `proposalflow.proposals` becomes an
AssignmentSuggested and, in `auto` mode, a ProposalAssigned with its deadlines on
`proposalflow.assignments`. The service runs in-process with its own database and consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.envelope import from_kafka, to_kafka
from shared.events import ASSIGNMENTS, PROPOSALS, Actor, ProposalFiled, ProposalSubmitted, Proposer, Role, Suggestion
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.policy import POLICY_ENV_VAR

pytestmark = pytest.mark.kafka

POLICY = Path(__file__).resolve().parents[2] / "shared" / "policies" / "dongguan.yaml"


async def test_a_filed_proposal_is_suggested_and_auto_assigned_with_deadlines_over_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str
) -> None:
    run = uuid.uuid4().hex[:8]
    policy = tmp_path / "auto.yaml"
    policy.write_text(POLICY.read_text(encoding="utf-8").replace("assignment_mode: confirm", "assignment_mode: auto"))
    url = f"sqlite+aiosqlite:///{tmp_path}/assignment.db"
    monkeypatch.setenv(POLICY_ENV_VAR, str(policy))
    monkeypatch.setenv("PROPOSALFLOW_ASSIGNMENT_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_ASSIGNMENT_CONSUMER_GROUP", f"itest-assignment-{run}")
    monkeypatch.setenv("PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S", "0.1")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    for topic in (PROPOSALS, ASSIGNMENTS):
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, 3, 1)])
    await admin.close()
    await upgrade_async("assignment", url)

    from services.assignment.app import build

    runtime, _app = build()
    await runtime.start()
    consumer = AIOKafkaConsumer(
        ASSIGNMENTS, bootstrap_servers=kafka_bootstrap, group_id=f"itest-reader-{run}", auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    await producer.start()
    try:
        proposal_id = f"p-kafka-{run}"
        actor = Actor(id="c-1", role=Role.COMMITTEE)
        proposer = Proposer(id="m-1", name="张委员")
        now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
        for event in (
            ProposalSubmitted(
                proposal_id=proposal_id,
                actor=actor,
                title="关于加强学校周边交通安全的建议",
                body="上下学高峰期学校周边交通拥堵, 学生出行安全隐患大。",
                category="社会建设",
                session_kind="interim",
                first_proposer=proposer,
                suggestions=[Suggestion(number=1, text="安排警力护学岗")],
                submitted_at=now,
            ),
            ProposalFiled(
                proposal_id=proposal_id,
                actor=actor,
                filing_number="2026-0100",
                title="关于加强学校周边交通安全的建议",
                category="社会建设",
                first_proposer=proposer,
                suggestion_count=1,
                filed_at=now,
            ),
        ):
            key, value, headers = to_kafka(envelope_for(event, "intake"))
            await producer.send_and_wait(PROPOSALS, value=value, key=key, headers=headers)

        seen: dict[str, dict[str, object]] = {}

        async def collect() -> None:
            async for record in consumer:
                envelope = from_kafka(record.value, record.headers)
                if envelope.subject == proposal_id:
                    seen[envelope.type] = envelope.data
                    if "proposalflow.assignment.assigned.v1" in seen:
                        return

        await asyncio.wait_for(collect(), timeout=60)
    finally:
        await consumer.stop()
        await producer.stop()
        await runtime.stop()

    suggested = seen["proposalflow.assignment.suggested.v1"]
    assigned = seen["proposalflow.assignment.assigned.v1"]
    assert suggested["lead_unit"] == assigned["lead_unit"]
    # Traffic around schools goes to the police (交警) as in the labelled set, not by the keyword 交通.
    assert assigned["lead_unit"] == {"id": "dg-gaj", "name": "东莞市公安局"}
    assert "相似历史提案: 市公安局" in json.dumps(suggested["reasons"], ensure_ascii=False)
    assert assigned["actor"] == {"id": "assignment-engine", "role": "system", "unit": None}
    assert {"reply_due", "dispute_until", "assigned_at"} <= set(assigned)
    assert assigned["dispute_until"] > assigned["assigned_at"][:10]
