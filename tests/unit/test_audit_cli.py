"""`proposalflow audit verify` and `proposalflow audit export` against a SQLite audit database."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text
from typer.testing import CliRunner

from proposalflow.cli import app
from services.audit import service
from services.audit.unit_of_work import SqlUnitOfWork
from shared.db import create_engine
from shared.envelope import Envelope
from shared.migrate import upgrade_async
from tests.fakes import record_of


async def seeded(url: str, count: int) -> None:
    await upgrade_async("audit", url)
    engine = create_engine(url)
    try:
        for n in range(count):
            envelope = Envelope(type="t.v1", source="/proposalflow/test", subject=f"p-{n % 2}", data={"n": n})
            async with engine.begin() as conn:
                await service.record_event(SqlUnitOfWork(conn, b"cli-key"), envelope, record_of(envelope, offset=n))
    finally:
        await engine.dispose()


async def test_verify_exits_0_when_the_chain_holds_and_1_naming_the_broken_entry(tmp_path, monkeypatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "cli-key")
    await seeded(url, 3)
    runner = CliRunner()
    held = await asyncio.to_thread(runner.invoke, app, ["audit", "verify"])
    assert held.exit_code == 0, held.output
    assert json.loads(held.output)["checked"] == 3

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER audit_entries_no_update"))
        await conn.execute(text("UPDATE audit_entries SET payload = '{\"n\": 99}' WHERE seq = 2"))
    await engine.dispose()
    broken = await asyncio.to_thread(runner.invoke, app, ["audit", "verify"])
    assert broken.exit_code == 1
    report = json.loads(broken.output)
    assert report["broken"]["seq"] == 2
    assert "does not match its hash" in report["broken"]["reason"]


async def test_export_writes_every_matching_entry_to_a_file(tmp_path, monkeypatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_DATABASE_URL", url)
    await seeded(url, 4)
    out = tmp_path / "p-1.jsonl"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["audit", "export", "--subject", "p-1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(line["seq"], line["subject_seq"], line["payload"]) for line in lines] == [
        (2, 1, {"n": 1}),
        (4, 2, {"n": 3}),
    ]


async def test_anchor_then_verify_against_the_anchors(tmp_path, monkeypatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "cli-key")
    await seeded(url, 3)
    anchors = tmp_path / "worm" / "anchors.jsonl"
    runner = CliRunner()
    anchored = await asyncio.to_thread(runner.invoke, app, ["audit", "anchor", "--to", str(anchors)])
    assert anchored.exit_code == 0, anchored.output
    assert json.loads(anchored.output.splitlines()[-1])["seq"] == 3
    assert anchors.read_text().count("\n") == 1
    held = await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--anchors", str(anchors)])
    assert held.exit_code == 0 and json.loads(held.output)["anchors_checked"] == 1

    anchors.write_text(anchors.read_text().replace('"seq":3', '"seq":9'))
    cut = await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--anchors", str(anchors)])
    assert cut.exit_code == 1 and "entry 9" in json.loads(cut.output)["broken"]["reason"]
    anchors.write_text("not an anchor\n")
    unreadable = await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--anchors", str(anchors)])
    assert unreadable.exit_code == 2 and "line 1 of the anchor file" in unreadable.output
