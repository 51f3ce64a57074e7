"""The plumbing tables' one migration history (the `plumbing` branch in shared/migrations/versions).

A database made before the branch existed, by each service's own copy of the plumbing revisions, must
upgrade to the new layout without losing a row and end with exactly the schema and the version rows a
new database gets; a plumbing revision written once must reach every service. The old revisions are
kept as they were at LEGACY, the last commit with each service's own copy, in tests/data/legacy_migrations
(so the test needs no git history: a shallow clone runs it too). Every test here runs on SQLite
and on PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.db import create_engine
from shared.migrate import SERVICES_DIR, alembic_config, upgrade_async
from shared.settings import SERVICES

LEGACY = "f1cdf2d2da8d880627bc629edef618d3bc27318e"
"""The last commit whose services each carried the plumbing tables in their own 0001 and 0003."""

ROOT = SERVICES_DIR.parent
AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

PLUMBING_ROWS: dict[str, dict[str, Any]] = {
    "outbox": {
        "id": 7,
        "event_id": "e-outbox-1",
        "topic": "proposalflow.proposals",
        "key": "p-1",
        "type": "org.cppcc.proposal.withdrawn.v1",
        "headers": "[]",
        "payload": b"{}",
        "created_at": AT,
        "sent_at": None,
    },
    "inbox": {"consumer": "progress", "event_id": "e-inbox-1", "received_at": AT},
    "parked_events": {
        "id": 3,
        "consumer": "progress",
        "subject": "p-1",
        "topic": "proposalflow.assignments",
        "partition": 4,
        "offset": 1234,
        "key": b"p-1",
        "value": b"{}",
        "headers": "[]",
        "reason": "not ready",
        "parked_at": AT,
    },
    "idempotency_keys": {
        "principal": "m-1",
        "key": "k-1",
        "request_hash": "f" * 64,
        "status_code": 201,
        "response": b'{"id": "p-1"}',
        "created_at": AT,
    },
}
"""A row in each plumbing table, as the old revisions made them."""

FAILED = {"failed_at": AT, "error": "MessageSizeTooLargeError"}
"""The outbox columns the old 0003 added."""

SERVICE_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "intake": ("filing_counters", {"year": 2026, "last": 41}),
    "assignment": ("units", {"id": "u-edu", "name": "市教育局", "short_name": "教育局", "kind": "government"}),
    "progress": ("co_opinions", {"proposal_id": "p-1", "unit": "u-edu", "text": "会办意见", "submitted_at": AT}),
    "notify": ("proposals", {"id": "p-1", "title": "关于加强社区养老服务的提案", "signers": ["m-1", "m-2"]}),
    "audit": ("audit_chain_head", {"chain": "log", "seq": 1, "hash": "a" * 64, "updated_at": AT}),
}
"""A row of each service's own tables, to show the upgrade leaves them alone."""


LEGACY_REVISIONS = ROOT / "tests" / "data" / "legacy_migrations"
"""Each service's revision files at LEGACY, stored as `<name>.py.txt` (not collected, not linted)."""


def legacy_config(service: str, url: str, into: Path) -> Config:
    """Alembic configured with the service's revisions as they were at LEGACY (its own plumbing copy)."""
    versions = into / "versions"
    versions.mkdir(parents=True)
    shutil.copy(SERVICES_DIR / service / "migrations" / "env.py", into)
    kept = sorted((LEGACY_REVISIONS / service).glob("*.py.txt"))
    assert kept, f"no revisions of {service} as they were at {LEGACY} under {LEGACY_REVISIONS}"
    for path in kept:
        shutil.copy(path, versions / path.name.removesuffix(".txt"))
    config = Config()
    config.set_main_option("script_location", str(into))
    config.attributes["database_url"] = url
    return config


def _table(name: str, row: dict[str, Any]) -> sa.TableClause:
    types = {"signers": sa.JSON(), **{column: sa.DateTime(timezone=True) for column in row if column.endswith("_at")}}
    return sa.table(name, *(sa.column(column, types.get(column)) for column in row))


def _rows(legacy_head: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, row in PLUMBING_ROWS.items():
        yield name, {**row, **FAILED} if name == "outbox" and legacy_head == "0003" else row


async def _write(url: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for name, row in rows:
                await conn.execute(sa.insert(_table(name, row)).values(**row))
    finally:
        await engine.dispose()


async def _read(url: str, name: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(found) for found in (await conn.execute(sa.select(_table(name, row)))).mappings()]
    finally:
        await engine.dispose()


async def _state(url: str, service: str) -> tuple[set[str], list[Any], dict[str, list[str]]]:
    """The version rows, the difference to the service's declared tables, and the outbox's columns."""
    metadata = importlib.import_module(f"services.{service}.store").metadata
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def look(sync: sa.Connection) -> tuple[set[str], list[Any], dict[str, list[str]]]:
                context = MigrationContext.configure(sync)
                columns = {"outbox": [column["name"] for column in sa.inspect(sync).get_columns("outbox")]}
                return set(context.get_current_heads()), compare_metadata(context, metadata), columns

            return await conn.run_sync(look)
    finally:
        await engine.dispose()


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _same(found: dict[str, Any], row: dict[str, Any]) -> bool:
    return all(
        found[column] == value or (isinstance(value, datetime) and _utc(found[column]) == value.astimezone(UTC))
        for column, value in row.items()
    )


@pytest.mark.parametrize("legacy_head", ["0002", "0003"])
@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_of_the_old_layout_upgrades_without_loss(
    db_url: str, service: str, legacy_head: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(command.upgrade, legacy_config(service, db_url, tmp_path / "legacy"), legacy_head)
    rows = [*_rows(legacy_head), SERVICE_ROWS[service]]
    await _write(db_url, rows)

    await upgrade_async(service, db_url)

    for name, row in rows:
        found = await _read(db_url, name, row)
        assert len(found) == 1 and _same(found[0], row), f"{service}: {name} after the upgrade: {found}"
    fresh = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    await upgrade_async(service, fresh)
    (versions, diff, columns), (fresh_versions, _, _) = await _state(db_url, service), await _state(fresh, service)
    assert diff == [], f"{service}: the upgraded schema differs from the declared tables: {diff}"
    assert {"failed_at", "error"} <= set(columns["outbox"])
    assert versions == fresh_versions, "the upgraded database must record what a new one records"


NEXT_PLUMBING = '''"""a test's plumbing revision: outbox.note

Revision ID: plumbing_next
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "plumbing_next"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("note")
'''


@pytest.mark.parametrize("service", SERVICES)
async def test_a_plumbing_revision_written_once_reaches_an_old_database_of_every_service(
    db_url: str, service: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(command.upgrade, legacy_config(service, db_url, tmp_path / "legacy"), "0003")
    await _write(db_url, list(_rows("0003")))
    config = alembic_config(service, db_url)
    head = ScriptDirectory.from_config(config).get_revision("plumbing@head")
    assert head is not None
    extra = tmp_path / "next"
    extra.mkdir()
    (extra / "plumbing_next.py").write_text(NEXT_PLUMBING.format(down=head.revision), encoding="utf-8")
    config.set_main_option("version_locations", f"{config.get_main_option('version_locations')}{os.pathsep}{extra}")

    await asyncio.to_thread(command.upgrade, config, "heads")

    versions, _, columns = await _state(db_url, service)
    assert "note" in columns["outbox"]
    assert "plumbing_next" in versions
    outbox = await _read(db_url, "outbox", {**PLUMBING_ROWS["outbox"], **FAILED})
    assert len(outbox) == 1 and outbox[0]["event_id"] == "e-outbox-1"
