"""The async database of one service: SQLite by default (run in place, shared/sqlite_inline.py), PostgreSQL
(asyncpg) in production.

Tables are SQLAlchemy Core tables on a per-service `MetaData`; :func:`add_plumbing_tables` adds the
tables every service needs for its delivery guarantees (outbox, inbox, parked events, idempotency
keys), so a service's state and its messaging bookkeeping commit in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared import sqlite_inline

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants a BIGINT for a long-lived log.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_metadata() -> MetaData:
    """A service's metadata, with constraint names that migrations can rely on."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def add_plumbing_tables(metadata: MetaData) -> None:
    """Outbox, inbox, parked events and idempotency keys, on a service's own metadata."""
    Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(100), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=True),
        Column("type", String(200), nullable=False),
        Column("headers", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("sent_at", UTCDateTime(), nullable=True),
        # Set by the relay when the row failed for good (shared/relay.py: OutboxRelay); cleared by
        # `proposalflow outbox retry`. A failed row stays unsent and is skipped until then.
        Column("failed_at", UTCDateTime(), nullable=True),
        Column("error", Text, nullable=True),
        Index("ix_outbox_unsent", "id", sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL")),
    )
    Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("received_at", UTCDateTime(), nullable=False),
    )
    Table(
        "parked_events",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("consumer", String(100), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=True),
        Column("headers", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("parked_at", UTCDateTime(), nullable=False),
        Index("ix_parked_events_subject", "consumer", "subject", "topic"),
    )
    Table(
        "idempotency_keys",
        metadata,
        Column("principal", String(200), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
    )


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite, run in place (shared/sqlite_inline.py), WAL mode and one connection per
    process, another process's lock waited for without holding the loop."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Every transaction takes SQLite's one write lock at BEGIN (below), so connections of one
            # process never work in parallel anyway; with one pooled connection they queue on the pool,
            # woken at once, instead of in SQLite's busy handler, which sleeps up to 100 ms per retry.
            # Other processes on the same file (replicas, the CLI) are waited for in sqlite_inline, polling.
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
            kwargs.setdefault("pool_timeout", 30)
        # The sqlite3 calls run on the event loop's thread, not in aiosqlite's (shared/sqlite_inline.py).
        engine = create_async_engine(
            url, async_creator=sqlite_inline.creator(database or ":memory:", timeout=30), **kwargs
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Off: a locked database is waited for without blocking the loop (shared/sqlite_inline.py).
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN: two writers then queue instead of failing to upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # Let SQLAlchemy's BEGIN above be the only one pysqlite sees.
        @event.listens_for(engine.sync_engine, "connect", insert=True)
        def _sqlite_no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    kwargs.setdefault("pool_size", 10)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        ping_when_idle(engine, IDLE_BEFORE_PING_S)
    return engine


IDLE_BEFORE_PING_S = 5.0
"""A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out."""


def ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled connection at checkout only when it has been idle for `idle_s` seconds or more.

    SQLAlchemy's `pool_pre_ping` pings at every checkout, and on asyncpg a ping is three round trips
    (`BEGIN`, `;`, `ROLLBACK`): on the hot path, where a batch checks out a connection for its
    transaction, the relay for its turn and the processor for its after-commit look, that was as many
    round trips as the work itself (docs/performance.md). A connection used moments ago is alive unless
    the server went away since; then its first statement fails, SQLAlchemy invalidates it, and the error
    is transient (`shared.failures.is_transient`): retried like any outage. A connection that sat idle
    (a firewall, a server restart during a quiet hour) is pinged as before, and replaced if dead."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _handed_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            # The server closed it (a restart, a terminated backend) and asyncpg noticed: no need to ask.
            # Also what keeps a connection whose statements on the driver's own connection failed
            # (`driver_connection`: SQLAlchemy does not see those) from being handed out again.
            raise DisconnectionError("a pooled connection was closed by the server")
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # just connected, or used moments ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool then discards this connection and hands out a new one.
            raise DisconnectionError(f"a pooled connection idle for {idle_s:.0f}s or more is gone: {exc}") from exc


# Row helpers for the paths every event takes. Each statement is built once per table and column and
# executed with its values as parameters: SQLAlchemy then compiles it once and reuses it, where building
# `select(t).where(t.c.id == value)` or `insert(t).values(**row)` anew costs more than SQLite's own work
# for the statement (docs/performance.md).

_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_KEY = "match_value"


def built_once(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement `build` makes, made once per `key` and kept; execute it with its values as
    parameters (`bindparam`), never with values baked in."""
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return stmt


def _statement(kind: str, table: Table, column: str) -> Any:
    def build() -> Any:
        if kind == "select":
            return select(table).where(table.c[column] == bindparam(_KEY))
        if kind == "select-lock":
            return select(table).where(table.c[column] == bindparam(_KEY)).with_for_update()
        if kind == "update":
            return update(table).where(table.c[column] == bindparam(_KEY))
        return insert(table)

    return built_once(("row", kind, table, column), build)


async def row_by(
    conn: AsyncConnection, table: Table, value: Any, column: str = "id", *, lock: bool = False
) -> dict[str, Any] | None:
    """The row whose `column` equals `value` (the first, if several), or None. A row :func:`prefetch_by_id`
    read for this transaction serves the first read of it, without a statement. With `lock`, on PostgreSQL
    the row read by a statement stays locked until the transaction ends (`FOR UPDATE`), as
    :func:`prefetch_by_id` with `lock` does."""
    if column == "id":
        prefetched = _prefetched(conn, table)
        if prefetched is not None and value in prefetched:
            return prefetched.pop(value)
    kind = "select-lock" if lock and conn.dialect.name == "postgresql" else "select"
    row = (await conn.execute(_statement(kind, table, column), {_KEY: value})).mappings().first()
    return dict(row) if row is not None else None


async def rows_by(conn: AsyncConnection, table: Table, value: Any, column: str) -> list[dict[str, Any]]:
    """Every row whose `column` equals `value`."""
    return [dict(row) for row in (await conn.execute(_statement("select", table, column), {_KEY: value})).mappings()]


async def insert_rows(conn: AsyncConnection, table: Table, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Insert one row or several (every row with the same columns)."""
    _forget(conn, table, [row.get("id") for row in ([rows] if isinstance(rows, dict) else rows)])
    await conn.execute(_statement("insert", table, ""), rows)


async def update_by(conn: AsyncConnection, table: Table, value: Any, values: dict[str, Any], column: str = "id") -> int:
    """Set `values` on the rows whose `column` equals `value`; returns how many rows matched."""
    if not values:
        return 0
    if column == "id":
        _forget(conn, table, [value])
    result = await conn.execute(_statement("update", table, column), {**values, _KEY: value})
    return int(result.rowcount)


async def update_rows(conn: AsyncConnection, table: Table, changes: dict[Any, dict[str, Any]]) -> None:
    """Set each row's changed values (`changes`: id → values): the rows that change the same columns in one
    statement executed for all of them (`executemany`: one round trip on PostgreSQL, where asyncpg sends
    them together)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for value, values in changes.items():
        if values:
            by_columns.setdefault(tuple(sorted(values)), []).append({**values, _KEY: value})
    _forget(conn, table, list(changes))
    for rows in by_columns.values():
        await conn.execute(_statement("update", table, "id"), rows)


# Rows read ahead for a batch ----------------------------------------------------------------------
# A consumer's batch handles many records in one transaction, and each handler reads its proposal by id:
# on PostgreSQL a round trip each. `prefetch_by_id` reads the batch's rows in one statement; each serves
# the first `row_by(conn, table, id)` of it in the same transaction and is then gone, so a later read of
# that row, after whatever the handler changed, is a statement again. `insert_rows` and `update_by` drop
# the rows they write; a row written otherwise must not be read ahead in that transaction.

_PREFETCHED = "proposalflow.prefetched"


def transaction_state(conn: AsyncConnection, key: Any, make: Callable[[], Any] | None = None) -> Any:
    """What is kept under `key` for the transaction `conn` is in now, or None; with `make`, made if there is
    none. It never outlives its transaction: after a commit or a rollback the next one starts without."""
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection is not None else None
    if transaction is None:
        return None
    held = conn.info.get(key)
    if held is not None and held[0] is transaction:
        return held[1]
    if make is None:
        return None
    state = make()
    conn.info[key] = (transaction, state)
    return state


def end_transaction_state(conn: AsyncConnection, key: Any) -> None:
    """Forget what :func:`transaction_state` keeps under `key`."""
    conn.info.pop(key, None)


def _prefetched(conn: AsyncConnection, table: Table, *, new: bool = False) -> dict[Any, dict[str, Any] | None] | None:
    """This transaction's rows read ahead from `table` (None if none; a fresh dict with `new`)."""
    rows: dict[Any, dict[str, Any] | None] | None = transaction_state(
        conn, (_PREFETCHED, table.name), dict if new else None
    )
    return rows


def _forget(conn: AsyncConnection, table: Table, ids: list[Any]) -> None:
    prefetched = _prefetched(conn, table)
    if prefetched:
        for value in ids:
            prefetched.pop(value, None)


async def prefetch_by_id(
    conn: AsyncConnection, table: Table, ids: Iterable[Any], *, lock: bool = False
) -> list[dict[str, Any]]:
    """Read the rows of `table` with these ids in one statement, for the reads of this transaction
    (`row_by`); an id without a row is remembered as None. Outside a transaction it does nothing.
    Returns the rows it read (copies: the caller may look, for what else to read ahead). With `lock`, on
    PostgreSQL the rows stay locked until the transaction ends (`FOR UPDATE`, in id order), so another
    transaction about to change them (another replica's batch) waits and reads what this one wrote."""
    prefetched = _prefetched(conn, table, new=True)
    if prefetched is None:
        return []
    wanted = sorted({value for value in ids if value is not None and value not in prefetched})
    if not wanted:
        return []
    locking = lock and conn.dialect.name == "postgresql"
    query = built_once(
        ("prefetch", table, locking),
        lambda: (
            select(table).where(table.c.id.in_(bindparam("ids", expanding=True))).order_by(table.c.id).with_for_update()
            if locking
            else select(table).where(table.c.id.in_(bindparam("ids", expanding=True)))
        ),
    )
    found = {row["id"]: dict(row) for row in (await conn.execute(query, {"ids": wanted})).mappings()}
    for value in wanted:
        prefetched[value] = found.get(value)
    return [dict(row) for row in found.values()]


async def driver_connection(conn: AsyncConnection) -> Any:
    """The driver's own connection under `conn` (asyncpg's, on PostgreSQL), for the few plumbing statements
    every batch runs (the inbox, the relay's turn, read and mark): there SQLAlchemy's execution of a
    statement costs more than asyncpg's whole round trip (docs/performance.md). If `conn` is in a
    transaction, the transaction is begun on the server first: SQLAlchemy's asyncpg dialect sends
    `BEGIN` only with the first statement it runs itself, and a statement sent before it would run
    outside the transaction. Statements sent here commit or roll back with `conn`'s transaction."""
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if conn.in_transaction() and getattr(adapted, "_transaction", True) is None:
        await adapted._start_transaction()
    return raw.driver_connection


async def ping(engine: AsyncEngine) -> None:
    """Raises if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def create_all(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create tables directly (tests); services use their Alembic migrations."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


__all__ = [
    "AsyncConnection",
    "AsyncEngine",
    "BigId",
    "add_plumbing_tables",
    "built_once",
    "create_all",
    "create_engine",
    "driver_connection",
    "end_transaction_state",
    "insert_rows",
    "is_sqlite",
    "new_metadata",
    "ping",
    "prefetch_by_id",
    "row_by",
    "rows_by",
    "transaction_state",
    "update_by",
    "update_rows",
]


_INSERTS: dict[tuple[Table, str, str | None], Any] = {}


def insert_new(table: Table, dialect: str, unique: str | None = None) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` into `table`, built once per table and dialect: executed with
    its rows as parameters, SQLAlchemy compiles it once, not on every call (docs/performance.md)."""
    key = (table, dialect, unique)
    stmt = _INSERTS.get(key)
    if stmt is None:
        index = [unique] if unique else None
        if dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=index)
        elif dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=index)
        else:
            stmt = insert(table)
        _INSERTS[key] = stmt
    return stmt
