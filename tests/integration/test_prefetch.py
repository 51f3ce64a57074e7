"""Rows read ahead for a batch (shared/db.py `prefetch_by_id`), on SQLite and PostgreSQL: one statement for
the batch's rows, and never a stale row, whatever the transaction wrote or rolled back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify import store
from shared.db import create_engine, insert_rows, prefetch_by_id, row_by, update_by
from shared.migrate import upgrade_async


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("notify", db_url)
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        for n in (1, 2, 3):
            await insert_rows(conn, store.proposals, {"id": f"p-{n}", "title": f"提案 {n}", "signers": [f"m-{n}"]})
    yield engine
    await engine.dispose()


def count_selects(engine: AsyncEngine) -> list[str]:
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "proposals" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_a_batch_reads_its_rows_in_one_statement_and_each_serves_its_first_read(engine) -> None:
    selects = count_selects(engine)
    async with engine.begin() as conn:
        await prefetch_by_id(conn, store.proposals, ["p-1", "p-2", "p-unknown"])
        assert len(selects) == 1
        assert (await row_by(conn, store.proposals, "p-1"))["title"] == "提案 1"
        assert (await row_by(conn, store.proposals, "p-2"))["signers"] == ["m-2"]
        assert await row_by(conn, store.proposals, "p-unknown") is None
        assert len(selects) == 1, "the prefetched rows are read without a statement"
        assert (await row_by(conn, store.proposals, "p-3"))["title"] == "提案 3"
        assert len(selects) == 2, "a row not read ahead is a statement of its own"


async def test_a_row_written_or_read_once_is_read_again_from_the_database(engine) -> None:
    async with engine.begin() as conn:
        await prefetch_by_id(conn, store.proposals, ["p-1", "p-2", "p-new"])
        await update_by(conn, store.proposals, "p-1", {"title": "改过的标题"})
        assert (await row_by(conn, store.proposals, "p-1"))["title"] == "改过的标题"
        await insert_rows(conn, store.proposals, {"id": "p-new", "title": "新提案", "signers": []})
        assert (await row_by(conn, store.proposals, "p-new"))["title"] == "新提案"
        await row_by(conn, store.proposals, "p-2")
        await update_by(conn, store.proposals, "p-2", {"title": "第二次"})
        assert (await row_by(conn, store.proposals, "p-2"))["title"] == "第二次"


async def test_rows_read_ahead_serve_only_their_own_transaction(engine) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        await prefetch_by_id(conn, store.proposals, ["p-1"])
        await conn.rollback()
        await conn.begin()
        await conn.execute(text("UPDATE proposals SET title = '别人改的' WHERE id = 'p-1'"))
        await conn.commit()
        await conn.begin()
        assert (await row_by(conn, store.proposals, "p-1"))["title"] == "别人改的"
        await conn.rollback()
