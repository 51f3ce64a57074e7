"""The export formats of the audit log, for an inspector: JSON Lines and CSV, one stored entry per
line, every field, so the chain can be re-verified from the file alone. Pure: no I/O."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.audit.domain import CHAINED_FIELDS, canonical_json, rfc3339

FIELDS = ("id", *CHAINED_FIELDS, "hash")
"""Export columns: the row id, the chained fields, the entry's hash."""


def _plain(value: Any) -> Any:
    return rfc3339(value) if isinstance(value, datetime) else value


def exported(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry as an export carries it: timestamps in the canonical RFC 3339 form."""
    return {name: _plain(entry[name]) for name in FIELDS}


def jsonl_line(entry: Mapping[str, Any]) -> str:
    """One JSON Lines line (canonical JSON: sorted keys, no whitespace, UTF-8)."""
    return canonical_json(exported(entry)) + "\n"


def csv_header() -> str:
    return _csv_line(list(FIELDS))


def csv_line(entry: Mapping[str, Any]) -> str:
    """One CSV row: an empty cell is no value; the payload is canonical JSON text."""
    row = exported(entry)
    row["payload"] = canonical_json(row["payload"])
    return _csv_line(["" if row[name] is None else str(row[name]) for name in FIELDS])


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()
