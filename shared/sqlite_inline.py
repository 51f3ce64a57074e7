"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's own thread.

SQLAlchemy's `sqlite+aiosqlite` dialect drives an aiosqlite connection, which runs every call of the
sqlite3 module in a thread of its own: a statement is four or five round trips between the event loop
and that thread (cursor, execute, fetch, close), each a queue put, a thread wake-up, a self-pipe
write and the GIL changing hands. Measured in `make bench`, those hops cost more CPU than SQLite
itself (docs/performance.md). A statement on a local SQLite file takes microseconds, so this module
runs it where it is called, keeping aiosqlite's interface so the dialect cannot tell the difference.

The one thing that could block the loop for long is a lock held by *another process* (a replica, the
CLI): every transaction here begins `BEGIN IMMEDIATE`, which waits for the file's write lock. So the
connection's own busy handler is off (`busy_timeout=0`), and a statement that meets a locked database
is retried from here with an asyncio sleep between tries, until `timeout` seconds have passed, as
SQLite's busy handler would, without holding the loop meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def _locked(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return "database is locked" in str(exc)


async def _until_unlocked(call: Callable[[], T], patience: float) -> T:
    """Run `call`; while the database is locked by someone else, wait (without blocking the loop)
    and try again, for up to `patience` seconds."""
    deadline: float | None = None
    pause = 0.001
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
            if now >= deadline:
                raise
            await asyncio.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.05)


class InlineCursor:
    """An aiosqlite-shaped cursor over a sqlite3 cursor, run in place."""

    __slots__ = ("_cursor", "_timeout")

    def __init__(self, cursor: sqlite3.Cursor, timeout: float) -> None:
        self._cursor = cursor
        self._timeout = timeout

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        await _until_unlocked(lambda: self._cursor.execute(sql, parameters), self._timeout)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any] | dict[str, Any]]) -> InlineCursor:
        rows = list(parameters)
        await _until_unlocked(lambda: self._cursor.executemany(sql, rows), self._timeout)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _InPlace:
    """Stands in for aiosqlite's queue to its thread (SQLAlchemy's dialect puts a call on it directly
    to set the isolation level): the call runs at once and its future is resolved."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the future
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """An aiosqlite-shaped connection over a sqlite3 connection, run in place."""

    def __init__(self, connection: sqlite3.Connection, timeout: float) -> None:
        self._conn = connection
        self._timeout = timeout
        self._tx = _InPlace()

    @property
    def _connection(self) -> sqlite3.Connection | None:
        """aiosqlite's name for the open sqlite3 connection (None once closed); the dialect checks it."""
        return self._conn

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._timeout)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        cursor = self.cursor()
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        await _until_unlocked(self._conn.commit, self._timeout)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()

    def stop(self) -> None:
        self._conn.close()

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any], **kw: Any) -> None:
        self._conn.create_function(name, num_params, func, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]  # validated by sqlite3

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


def creator(database: str, *, timeout: float) -> Callable[[], Any]:
    """SQLAlchemy's `async_creator` for one SQLite file (or `:memory:`)."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            database, timeout=0, isolation_level=None, check_same_thread=False, uri=database.startswith("file:")
        )
        return InlineConnection(connection, timeout)

    return connect
