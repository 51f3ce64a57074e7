"""Intake's Kafka door, handler logic only: FastStream's TestKafkaBroker in place of a broker
(the real broker carries the same commands in tests/e2e)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import select

from services.intake import store
from services.intake.app import build
from shared.envelope import CLOUDEVENTS_JSON, Envelope, to_kafka
from shared.events import SUBMISSIONS, SubmitProposal
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime

PORTAL = "/portal/members"
COMMAND = {
    "actor": {"id": "m-1", "role": "member"},
    "title": "关于加快智能制造的建议",
    "body": "东莞制造业规模大, 需要加快数字化转型。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "suggestions": ["设立专项资金", "建设公共服务平台"],
}


@pytest.fixture
async def runtime(tmp_path, monkeypatch) -> AsyncIterator[ServiceRuntime]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{PORTAL},/portal/other")
    await upgrade_async("intake", url)
    runtime, _app = build()
    yield runtime
    await runtime.engine.dispose()


async def staged(runtime: ServiceRuntime) -> list[tuple[str, dict[str, object]]]:
    table = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table.c.type, table.c.payload).order_by(table.c.id))).all()
    return [(row.type, json.loads(row.payload)) for row in rows]


async def send(runtime: ServiceRuntime, envelope: Envelope, *, structured: bool = False) -> None:
    async with TestKafkaBroker(runtime.broker) as broker:
        if structured:
            body = {
                "specversion": "1.0",
                "id": envelope.id,
                "source": envelope.source,
                "type": envelope.type,
                "data": envelope.data,
            }
            await broker.publish(
                json.dumps(body).encode(), topic=SUBMISSIONS, headers={"content-type": CLOUDEVENTS_JSON}
            )
        else:
            _key, value, headers = to_kafka(envelope)
            await broker.publish(value, topic=SUBMISSIONS, headers={k: v.decode() for k, v in headers})


async def test_an_allow_listed_submission_becomes_a_proposal(runtime: ServiceRuntime) -> None:
    await send(runtime, Envelope(type=SubmitProposal.TYPE, source=PORTAL, data=COMMAND))
    [(ce_type, data)] = await staged(runtime)
    assert ce_type == "proposalflow.proposal.submitted.v1"
    assert data["suggestions"] == [{"number": 1, "text": "设立专项资金"}, {"number": 2, "text": "建设公共服务平台"}]


async def test_structured_mode_is_accepted_and_a_resent_command_names_the_same_proposal(
    runtime: ServiceRuntime,
) -> None:
    command = Envelope(type=SubmitProposal.TYPE, source=PORTAL, data=COMMAND)
    await send(runtime, command, structured=True)
    await send(runtime, command)
    events = await staged(runtime)
    assert [ce_type for ce_type, _ in events] == ["proposalflow.proposal.submitted.v1"]


async def test_a_rule_broken_over_kafka_is_answered_with_a_rejection(runtime: ServiceRuntime) -> None:
    await send(runtime, Envelope(type=SubmitProposal.TYPE, source=PORTAL, data={**COMMAND, "category": "体育"}))
    [(ce_type, data)] = await staged(runtime)
    assert ce_type == "proposalflow.submission.rejected.v1"
    assert "unknown category" in str(data["reason"])
    assert data["errors"] == [{"rule": "category_known", "message": data["reason"]}]


async def test_unknown_command_types_are_answered_too(runtime: ServiceRuntime) -> None:
    await send(runtime, Envelope(type="proposalflow.submission.deleted.v1", source=PORTAL, data={}))
    [(ce_type, data)] = await staged(runtime)
    assert ce_type == "proposalflow.submission.rejected.v1"
    assert SubmitProposal.TYPE in str(data["reason"])


async def test_a_joint_proposal_over_kafka_asks_its_cosigners_to_confirm(runtime: ServiceRuntime) -> None:
    joint = {**COMMAND, "cosigners": [{"id": "m-2", "name": "李四"}]}
    await send(runtime, Envelope(type=SubmitProposal.TYPE, source=PORTAL, data=joint))
    (submitted, _), (requested, data) = await staged(runtime)
    assert (submitted, requested) == (
        "proposalflow.proposal.submitted.v1",
        "proposalflow.proposal.cosign-requested.v1",
    )
    assert data["cosigners"] == [{"id": "m-2", "name": "李四", "kind": "member"}]
