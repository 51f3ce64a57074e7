"""An in-memory unit of work and log for audit: recording and verifying run without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from services.audit.domain import ChainTip, chain
from services.audit.store import EntryFilter
from services.audit.unit_of_work import Entry, Log, UnitOfWork


class FakeLog(Log):
    """The written entries in a list; `head` is the recorded end of the chain."""

    def __init__(self) -> None:
        self.entries_written: list[Entry] = []
        self.recorded_head: ChainTip | None = None

    async def head(self) -> ChainTip | None:
        return self.recorded_head

    async def hashes_at(self, seqs: Sequence[int]) -> dict[int, str]:
        return {entry["seq"]: entry["hash"] for entry in self.entries_written if entry["seq"] in seqs}

    async def pages(
        self, selection: EntryFilter | None = None, *, page_size: int = 500, until_seq: int | None = None
    ) -> AsyncIterator[list[Entry]]:
        assert selection is None, "the fake log reads every entry"
        entries = sorted(self.entries_written, key=lambda entry: entry["seq"])
        entries = [entry for entry in entries if until_seq is None or entry["seq"] <= until_seq]
        for start in range(0, len(entries), page_size):
            yield [dict(entry) for entry in entries[start : start + page_size]]


class FakeUnitOfWork(UnitOfWork):
    """Links entries after the log's tips, as the store does, and writes them to `log` on commit."""

    def __init__(self, log: FakeLog, key: bytes | None) -> None:
        self.log = log
        self.key = key
        self.linked: list[Entry] = []

    def _tip(self) -> ChainTip:
        if self.linked:
            return ChainTip(self.linked[-1]["seq"], self.linked[-1]["hash"])
        return self.log.recorded_head or ChainTip()

    def _subject_tip(self, subject: str) -> ChainTip | None:
        mine = [e for e in [*self.log.entries_written, *self.linked] if e["subject"] == subject]
        return ChainTip(mine[-1]["subject_seq"], mine[-1]["hash"]) if mine else None

    async def append(self, entry: Mapping[str, Any]) -> Entry:
        subject = entry.get("subject")
        subject_tip = self._subject_tip(subject) if subject is not None else None
        linked = chain(entry, log_tip=self._tip(), subject_tip=subject_tip, key=self.key)
        self.linked.append(linked)
        return linked

    async def commit(self) -> None:
        if self.linked:
            self.log.entries_written += self.linked
            self.log.recorded_head = ChainTip(self.linked[-1]["seq"], self.linked[-1]["hash"])
        self.linked = []

    def rollback(self) -> None:
        self.linked = []
