"""What `proposalflow audit verify|export` run, against the audit database in the settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from services.audit import export as formats
from services.audit import service, store
from services.audit.anchors import anchor_head, read_anchors
from services.audit.domain import Anchor
from services.audit.settings import AuditSettings
from services.audit.unit_of_work import SqlLog
from shared.db import create_engine
from shared.settings import service_settings


async def verify(anchors_file: Path | None = None) -> dict[str, Any]:
    """The verify report of the configured audit database, with the configured HMAC key, checked
    against the anchors of `anchors_file` when given."""
    anchors = read_anchors(anchors_file) if anchors_file is not None else []
    engine = create_engine(service_settings("audit").database_url)
    try:
        return await service.verify(SqlLog(engine), AuditSettings().key, anchors=anchors)
    finally:
        await engine.dispose()


async def anchor(to: Path | None) -> Anchor | None:
    """The chain head as an anchor line; appended to `to` when given (if it moved since its last line)."""
    engine = create_engine(service_settings("audit").database_url)
    try:
        if to is not None:
            return await anchor_head(engine, to)
        return await service.current_anchor(SqlLog(engine))
    finally:
        await engine.dispose()


async def export(write: Callable[[str], object], fmt: Literal["jsonl", "csv"], selection: store.EntryFilter) -> int:
    """Write the matching entries, a page at a time; returns how many."""
    engine = create_engine(service_settings("audit").database_url)
    written = 0
    try:
        if fmt == "csv":
            write(formats.csv_header())
        async for entry in SqlLog(engine).entries(selection):
            write(formats.csv_line(entry) if fmt == "csv" else formats.jsonl_line(entry))
            written += 1
    finally:
        await engine.dispose()
    return written
