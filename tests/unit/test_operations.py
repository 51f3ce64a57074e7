"""What an ops team relies on: health, readiness, metrics, JSON logs, trace context through events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from services.intake import store
from services.intake.app import build
from shared.auth import issue_token
from shared.events import Role
from shared.migrate import upgrade_async
from shared.observability import JsonFormatter, bind_context
from shared.settings import CommonSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
async def client(tmp_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    await upgrade_async("intake", url)
    runtime, app = build()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def test_health_is_alive_and_readiness_names_what_is_missing(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503  # the broker was never connected in this test
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("unavailable")


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/proposals/nope", headers={"Authorization": "Bearer x"})
    text = (await client.get("/metrics")).text
    assert 'proposalflow_http_requests_total{method="GET",route="/proposals/{proposal_id}",status="401"}' in text


async def test_events_caused_by_a_request_carry_its_trace_and_correlation(client: httpx.AsyncClient) -> None:
    token = issue_token(CommonSettings(), subject="m-1", role=Role.MEMBER)
    response = await client.post(
        "/proposals",
        json={
            "title": "关于加快智能制造的建议",
            "body": "东莞制造业规模大, 需要加快数字化转型。",
            "category": "经济建设",
            "first_proposer": {"id": "m-1", "name": "张三"},
            "suggestions": ["设立专项资金"],
        },
        headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
            "x-correlation-id": "req-42",
        },
    )
    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "req-42"
    table = store.metadata.tables["outbox"]
    async with client.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        headers = dict(json.loads((await conn.execute(select(table.c.headers))).scalar_one()))
    assert headers["ce_correlationid"] == "req-42"
    assert headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert headers["traceparent"] != f"00-{TRACE_ID}-00f067aa0ba902b7-01"  # a new span for this hop


def test_log_lines_are_json_with_the_proposal_and_correlation() -> None:
    record = logging.LogRecord("proposalflow.test", logging.INFO, __file__, 1, "filed %s", ("2026-0001",), None)
    with bind_context(proposal_id="p-1", correlation_id="req-7"):
        line = json.loads(JsonFormatter("intake").format(record))
    assert line["message"] == "filed 2026-0001"
    assert (line["service"], line["proposal_id"], line["correlation_id"]) == ("intake", "p-1", "req-7")
