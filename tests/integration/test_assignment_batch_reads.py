"""Assignment's batch of filings (立案 → 交办建议) on SQLite and PostgreSQL: the units catalog and the
routing rules are read once per batch, not once per filing, and a change an administrator makes over HTTP
is what the next batch routes with."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import event, select

from services.assignment import store
from services.assignment.app import build as build_assignment
from shared.auth import issue_token
from shared.events import AssignmentSuggested, Role
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from tests.assignment_fakes import filed_events
from tests.fakes import record_of

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
OFFSETS = itertools.count(1)
ADMIN = {"Authorization": f"Bearer {issue_token(CommonSettings(), subject='a-1', role=Role.ADMIN)}"}
DISPATCHER = {"Authorization": f"Bearer {issue_token(CommonSettings(), subject='d-1', role=Role.DISPATCHER)}"}


@pytest.fixture
async def assignment(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ServiceRuntime, httpx.AsyncClient]]:
    monkeypatch.setenv("PROPOSALFLOW_ASSIGNMENT_DATABASE_URL", db_url)
    await upgrade_async("assignment", db_url)
    runtime, app = build_assignment(clock=lambda: START)
    async with runtime.transaction() as conn:
        await app.state.seed_and_learn(conn)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://assignment") as http:
        yield runtime, http
    await runtime.engine.dispose()


def catalog_reads(runtime: ServiceRuntime) -> list[str]:
    """Every SELECT of the units catalog or the routing rules the engine sends."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        words = " ".join(statement.split()).upper()
        if words.startswith("SELECT") and (" FROM UNITS " in f"{words} " or " FROM ROUTING_CONFIG " in f"{words} "):
            seen.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", before)
    return seen


async def file_batch(runtime: ServiceRuntime, proposal_ids: list[str]) -> None:
    [processor] = [p for p in runtime.processors if p.consumer == "assignment"]
    records = [
        record_of(envelope_for(e, "intake"), "proposalflow.proposals", next(OFFSETS))
        for pid in proposal_ids
        for e in filed_events(pid, START)
    ]
    assert set(await processor.process_batch(records)) == {"handled"}


async def suggested_leads(runtime: ServiceRuntime) -> list[str]:
    """The lead unit's name in each 交办建议 published so far, in order."""
    table = store.metadata.tables["outbox"]
    query = select(table.c.payload).where(table.c.type == AssignmentSuggested.TYPE).order_by(table.c.id)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [json.loads(row.payload)["lead_unit"]["name"] for row in rows]


async def test_a_batch_of_filings_reads_the_catalogs_once_and_the_next_batch_sees_an_admins_change(
    assignment: tuple[ServiceRuntime, httpx.AsyncClient],
) -> None:
    runtime, http = assignment
    reads = catalog_reads(runtime)
    await file_batch(runtime, [f"p-{n:04d}" for n in range(1, 6)])
    assert len(reads) == 2, reads  # the units once, the routing rules once, for five filings
    for n in range(1, 6):
        view = await http.get(f"/assignments/p-{n:04d}", headers=DISPATCHER)
        assert view.status_code == 200, view.text
        assert view.json()["lead_unit"] == "dg-zrzyj" and view.json()["status"] == "suggested"

    renamed = await http.patch("/units/dg-zrzyj", json={"name": "东莞市自然资源局(改)"}, headers=ADMIN)
    assert renamed.status_code == 200, renamed.text
    reads.clear()
    await file_batch(runtime, ["p-0006", "p-0007"])
    assert len(reads) == 2, reads
    names = await suggested_leads(runtime)
    assert len(names) == 7 and "东莞市自然资源局(改)" not in names[:5]
    assert names[5:] == ["东莞市自然资源局(改)"] * 2
