"""The anchor file (锚定): the chain head, appended now and then to a file outside the database.

Put the file where the database's writers cannot rewrite it: a write-once (WORM) volume or bucket,
or a directory another team ships to the log platform. `proposalflow audit verify --anchors FILE`
then checks that every anchored head is still in the log with the same hash, which catches what the
chain alone cannot: a cut-off tail with the head row set back, or (without the HMAC key) a whole
rewritten and re-hashed history.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from services.audit import service
from services.audit.domain import Anchor
from services.audit.unit_of_work import SqlLog

log = logging.getLogger("proposalflow.audit.anchor")


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor in the file, in file order; a line that is not an anchor is an error naming it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Anchor.parse(line, number) for number, line in enumerate(lines, start=1) if line.strip()]


def last_anchored_seq(path: Path) -> int:
    """The newest position anchored in the file (0 if none): anchors only ever move forward."""
    if not path.exists():
        return 0
    anchors = read_anchors(path)
    return max((anchor.seq for anchor in anchors), default=0)


def append_anchor(path: Path, anchor: Anchor) -> None:
    """One line, appended and flushed to disk (O_APPEND: replicas appending at once do not interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, (anchor.line() + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def anchor_head(engine: AsyncEngine, path: Path) -> Anchor | None:
    """Anchor the chain head if it moved since the last anchor; the anchor written, or None. The
    anchor is also logged, so the log platform holds a second copy."""
    anchor = await service.current_anchor(SqlLog(engine))
    if anchor is None or anchor.seq <= last_anchored_seq(path):
        return None
    append_anchor(path, anchor)
    log.info("audit chain anchored at entry %d: %s", anchor.seq, anchor.hash, extra={"anchor": anchor.line()})
    return anchor
