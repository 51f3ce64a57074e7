"""落实评价 by event: a member platform's `submission.implementation-evaluation-submitted` command on
`proposalflow.submissions`, carried out by progress through the HTTP route's use case. Handler logic only
(FastStream's TestKafkaBroker in place of a broker; tests/security/test_member_commands.py carries the
member commands over the real broker)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import select

from services.progress import store
from services.progress.app import build
from shared.envelope import Envelope, to_kafka
from shared.events import SUBMISSIONS, EvaluateImplementation
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from tests.progress_fixtures import Clock, feed, lifecycle
from tests.unit.test_progress_api import CO, COMMITTEE, COSIGNER, FIRST, LEAD, REPLY

PORTAL = "/portal/members"
M1 = {"id": "m-1", "role": "member"}


@pytest.fixture
async def implemented(tmp_path, monkeypatch) -> AsyncIterator[tuple[ServiceRuntime, httpx.AsyncClient]]:
    """p-0001 answered, evaluated satisfied (办结) and its one measure done (落实): 落实评价 is open."""
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{PORTAL}=member")
    await upgrade_async("progress", url)
    runtime, app = build(Clock(datetime(2026, 3, 20, 2, tzinfo=UTC)))
    await feed(runtime, lifecycle("p-0001"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:

        async def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
            answer = await http.post(f"/proposals/p-0001{path}", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        reply_id = (await post("/replies", REPLY, LEAD))["replies"][-1]["id"]
        await post(f"/replies/{reply_id}/review", {"decision": "approve"}, COMMITTEE)
        grades = {"handling_grade": "satisfied", "result_grade": "satisfied"}
        await post("/evaluations", grades, FIRST)
        closed = await post("/evaluations", grades, COSIGNER)
        measure = closed["measures"][0]["id"]
        done = await post(f"/measures/{measure}", {"status": "done", "note": "资金已拨付"}, CO)
        assert done["implemented_at"] is not None
        assert done["implementation_evaluation"]["state"] == "open"
        yield runtime, http
    await runtime.engine.dispose()


def command(actor: dict[str, Any], **data: Any) -> Envelope:
    body = {"proposal_id": "p-0001", "actor": actor, **data}
    return Envelope(type=EvaluateImplementation.TYPE, source=PORTAL, subject="p-0001", data=body)


async def send(runtime: ServiceRuntime, *envelopes: Envelope) -> None:
    async with TestKafkaBroker(runtime.broker) as broker:
        for envelope in envelopes:
            _key, value, headers = to_kafka(envelope)
            await broker.publish(value, topic=SUBMISSIONS, headers={k: v.decode() for k, v in headers})


async def staged(runtime: ServiceRuntime) -> list[tuple[str, dict[str, Any]]]:
    table = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table.c.type, table.c.payload).order_by(table.c.id))).all()
    return [(row.type, json.loads(row.payload)) for row in rows]


async def test_a_signer_evaluates_the_implementation_by_event(
    implemented: tuple[ServiceRuntime, httpx.AsyncClient],
) -> None:
    runtime, http = implemented
    satisfied = command(M1, grade="satisfied", comment="资金已到位")
    await send(runtime, satisfied, satisfied)  # redelivered: carried out once

    evaluated = [data for kind, data in await staged(runtime) if kind == "proposalflow.implementation.evaluated.v1"]
    assert len(evaluated) == 1
    assert (evaluated[0]["signer_id"], evaluated[0]["grade"], evaluated[0]["satisfied"]) == ("m-1", "satisfied", True)
    assert evaluated[0]["correlation_id"] == satisfied.id
    view = (await http.get("/proposals/p-0001", headers=COMMITTEE)).json()
    assert [(e["signer_id"], e["comment"]) for e in view["implementation_evaluations"]] == [("m-1", "资金已到位")]


async def test_a_refused_implementation_evaluation_is_answered_and_changes_nothing(
    implemented: tuple[ServiceRuntime, httpx.AsyncClient],
) -> None:
    runtime, http = implemented
    before = (await http.get("/proposals/p-0001", headers=COMMITTEE)).json()
    cases = {
        "not_signer": command({"id": "m-9", "role": "member"}, grade="satisfied"),
        "grade": command(M1, grade="great"),
        "malformed": command(M1, grade=5),
        "role": command({"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}, grade="satisfied"),
    }
    await send(runtime, *cases.values())

    rejected = {
        data["command_id"]: data
        for kind, data in await staged(runtime)
        if kind == "proposalflow.evaluation.rejected.v1"
    }
    assert set(rejected) == {envelope.id for envelope in cases.values()}
    assert rejected[cases["not_signer"].id]["errors"][0]["rule"] == "implementation_evaluator_is_signer"
    assert rejected[cases["grade"].id]["errors"][0]["rule"] == "grade_known"
    assert rejected[cases["malformed"].id]["reason"].startswith("invalid evaluation: grade")
    assert "may not evaluate an implementation (落实评价)" in rejected[cases["role"].id]["reason"]
    after = (await http.get("/proposals/p-0001", headers=COMMITTEE)).json()
    assert after["implementation_evaluations"] == before["implementation_evaluations"] == []
    assert after["measures"] == before["measures"]
