"""Audit's unit of work: entries linked onto the chain and written in the door's transaction; and the
log read back, a page at a time, for verify, the anchors and the exports.

The transaction is the door's: the consumer's, which also holds the inbox mark (shared/processor.py).
Linking an entry takes the chain head's lock (store.py), so the chain stays linear with several
replicas. The consumer works by the batch: its unit of work defers the writing (`defer`), so a batch's
entries are linked one by one and written together by `flush()` when the batch ends (the consumer's
`finish`); a transaction that would commit entries linked but not written is refused (store.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import shared.unit_of_work
from services.audit import store
from services.audit.domain import ChainTip
from services.audit.store import EntryFilter

Entry = dict[str, Any]


class UnitOfWork(shared.unit_of_work.UnitOfWork):
    """What audit's recording needs of storage: the chain's tips in, linked entries out."""

    @abstractmethod
    async def append(self, entry: Mapping[str, Any]) -> Entry:
        """Link the entry after the log's tip and its proposal's tip; the entry as linked (written by
        `commit()`)."""

    @abstractmethod
    async def commit(self) -> None:
        """Write the entries linked so far and move the chain head after them."""


class SqlUnitOfWork(UnitOfWork):
    """Audit's tables on the door's connection, the entries hashed with `key` when one is set.

    With `defer`, `commit()` leaves the linked entries to the end of the batch: :meth:`flush` writes
    them, once, for every record the batch recorded."""

    def __init__(self, conn: AsyncConnection, key: bytes | None, *, defer: bool = False) -> None:
        self.conn = conn
        self.key = key
        self.defer = defer

    async def expect(self, subjects: Iterable[str]) -> None:
        """Lock the log's tip and read the tips of these proposals in one query, before a batch."""
        await store.prefetch_subject_tips(self.conn, subjects)

    async def append(self, entry: Mapping[str, Any]) -> Entry:
        return await store.append(self.conn, entry, self.key, defer=True)

    async def commit(self) -> None:
        if not self.defer:
            await self.flush()

    def rollback(self) -> None:
        """Nothing to forget here: the store keeps what a transaction linked with the transaction, and it
        goes when the door's transaction rolls back."""

    async def flush(self) -> None:
        """Write every entry this transaction linked and not yet wrote, and move the head once."""
        await store.flush(self.conn)


class Log(ABC):
    """The log as it is read back: its recorded head, the hashes at anchored positions, and the entries
    a page at a time."""

    @abstractmethod
    async def head(self) -> ChainTip | None:
        """The recorded end of the log, or None before the first entry."""

    @abstractmethod
    async def hashes_at(self, seqs: Sequence[int]) -> dict[int, str]:
        """The hash of the entry at each of these positions, for those that exist."""

    @abstractmethod
    def pages(
        self, selection: EntryFilter | None = None, *, page_size: int = 500, until_seq: int | None = None
    ) -> AsyncIterator[list[Entry]]:
        """The matching entries (all without a selection) in log order, a page at a time, up to
        `until_seq` when given."""

    async def entries(self, selection: EntryFilter) -> AsyncIterator[Entry]:
        """Every matching entry in log order, read a page at a time."""
        async for page in self.pages(selection):
            for entry in page:
                yield entry


class SqlLog(Log):
    """The log in the audit database: each read in its own short transaction, so a year of entries is
    never held in memory nor behind one long-lived lock."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def head(self) -> ChainTip | None:
        async with self.engine.connect() as conn:
            return await store.head(conn)

    async def hashes_at(self, seqs: Sequence[int]) -> dict[int, str]:
        async with self.engine.connect() as conn:
            return await store.hashes_at(conn, list(seqs))

    def pages(
        self, selection: EntryFilter | None = None, *, page_size: int = 500, until_seq: int | None = None
    ) -> AsyncIterator[list[Entry]]:
        return store.pages(self.engine, selection or EntryFilter(), page_size=page_size, until_seq=until_seq)
