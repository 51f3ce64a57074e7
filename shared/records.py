"""A service's typed records as its tables' rows: a frozen dataclass of a domain (a dossier's reply, an
assignment's state…) has a field for each column, by the column's name; its row has the field values,
with the domain's enums as their values and its tuples as JSON lists. Pure: no database here."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def row_of(record: DataclassInstance) -> dict[str, Any]:
    """The table row of a record: every field by its column's name."""
    row: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        row[item.name] = value
    return row
