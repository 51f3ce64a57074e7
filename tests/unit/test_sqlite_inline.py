"""SQLite run on the event loop's thread (shared/sqlite_inline.py): a database locked by another
process is waited for without stopping the loop, and for no longer than the connection's patience."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import sqlite_inline
from shared.db import create_engine


async def rows(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return [row[0] for row in await conn.execute(text("SELECT n FROM t ORDER BY n"))]


async def make_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))


async def test_a_write_waits_for_another_writer_while_the_loop_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await make_table(engine)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the lock
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.5)
        assert not writing.done(), "the write went through while another writer held the lock"
        assert ticks >= 20, f"the event loop stalled while the write waited ({ticks} ticks in 0.5 s)"
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
    finally:
        ticking.cancel()
        other.close()
    assert await rows(engine) == [1]
    await engine.dispose()


async def test_a_lock_held_past_the_patience_fails_as_a_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", async_creator=sqlite_inline.creator(str(path), timeout=0.3)
    )
    await make_table(engine)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as conn:
                await conn.execute(text("BEGIN IMMEDIATE"))
    finally:
        other.close()
    assert 0.25 <= time.monotonic() - started < 5
    await engine.dispose()


async def test_rows_written_in_place_read_back_with_their_types(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'typed.db'}")
    await make_table(engine)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (:n)"), [{"n": 3}, {"n": 1}, {"n": 2}])
    assert await rows(engine) == [1, 2, 3]
    await engine.dispose()
