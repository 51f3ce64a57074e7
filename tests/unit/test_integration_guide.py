"""docs/integration.md stays true: every command of its worked examples goes through the real door of
the service that owns it (structured mode, as shown) and is answered as the guide shows, correlation id
included; and its table of commands names every command type there is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import MetaData, select

from services.intake import store as intake_store
from services.intake.app import build as build_intake
from services.progress import store as progress_store
from services.progress.app import build as build_progress
from shared.envelope import CLOUDEVENTS_JSON
from shared.events import SUBMISSIONS, UNIT_REPORTS, AssignmentForm, Command, Message, message_class
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from tests.progress_fixtures import feed, lifecycle

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
EXAMPLE = re.compile(r"<!-- example: (command|answer) -->\s*```json\n(.*?)```", re.DOTALL)
SOURCES = "/portal/members=member,/oa/dg-fgj=unit:dg-fgj"


def examples() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The guide's (command, answer) pairs, in order."""
    found = [(kind, json.loads(text)) for kind, text in EXAMPLE.findall(GUIDE.read_text(encoding="utf-8"))]
    assert [kind for kind, _ in found] == ["command", "answer"] * (len(found) // 2), "each command has its answer"
    return [(found[i][1], found[i + 1][1]) for i in range(0, len(found), 2)]


async def answers(runtime: ServiceRuntime, metadata: MetaData) -> dict[str, dict[str, Any]]:
    """What the service staged, by correlation id: type, key, headers and data."""
    table = metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).mappings().all()
    staged: dict[str, dict[str, Any]] = {}
    for row in rows:
        headers = dict(json.loads(row["headers"]))
        data = json.loads(row["payload"])
        staged[headers["ce_correlationid"]] = {"headers": headers, "key": row["key"], "data": data}
    return staged


async def through_the_door(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", SOURCES)
    await upgrade_async(service, url)
    runtime, _app = build_intake() if service == "intake" else build_progress()
    if service == "progress":  # the proposal of the examples, assigned to dg-fgj alone (单办)
        await feed(runtime, lifecycle("pf-2026-0042", lead="dg-fgj", co=(), form=AssignmentForm.SINGLE))
    topic = SUBMISSIONS if service == "intake" else UNIT_REPORTS
    async with TestKafkaBroker(runtime.broker) as broker:
        for command, _answer in pairs:
            body = json.dumps(command, ensure_ascii=False).encode()
            await broker.publish(body, topic=topic, headers={"content-type": CLOUDEVENTS_JSON})
    staged = await answers(runtime, intake_store.metadata if service == "intake" else progress_store.metadata)
    for command, answer in pairs:
        got = staged.get(command["id"])
        assert got is not None, f"nothing answered {command['type']} {command['id']}"
        assert got["headers"]["ce_type"] == answer["type"], got["data"]
        assert got["headers"]["ce_source"] == answer["source"]
        assert got["key"] == got["headers"]["ce_subject"] == answer["subject"]
        assert answer["correlationid"] == command["id"]
        for name, value in answer["data"].items():
            assert got["data"][name] == value, (answer["type"], name, got["data"][name])
    await runtime.engine.dispose()


@pytest.mark.parametrize(("service", "door"), [("intake", SUBMISSIONS), ("progress", UNIT_REPORTS)])
async def test_every_worked_example_is_answered_as_the_guide_shows(
    service: str, door: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = [(c, a) for c, a in examples() if (cls := message_class(c["type"])) is not None and cls.TOPIC == door]
    assert len(pairs) >= 2, f"the guide has a worked example, accepted and refused, for {door}"
    assert {a["type"].endswith(".rejected.v1") for _, a in pairs} == {True, False}
    await through_the_door(service, tmp_path, monkeypatch, pairs)


def test_the_table_of_commands_names_every_command_type() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    commands = [t for t, cls in Message.registry().items() if issubclass(cls, Command)]
    missing = [ce_type for ce_type in commands if f"| `{ce_type}` |" not in guide]
    assert not missing, f"docs/integration.md, 'The commands': add a row for {missing}"
