"""What every service's unit of work shares: used as `async with uow:`, it forgets on the way out what
the use case loaded or linked and did not commit (the door's transaction rolls back what was written).

Each service's own (services/<name>/unit_of_work.py) loads its aggregates or records and saves them with
their events on the door's connection; this base holds no state of its own. Pure: no database here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class UnitOfWork(ABC):
    """The context a use case runs in: `async with uow: … await uow.commit()`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.rollback()

    @abstractmethod
    def rollback(self) -> None:
        """Forget what was not committed."""
