"""An in-memory unit of work for progress: the use cases run against it without a database."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from typing import Any

from services.progress.domain import OPEN_STAGES, Dossier
from services.progress.unit_of_work import Snapshot, UnitOfWork
from shared.envelope import Envelope
from shared.events import Event


class FakeUnitOfWork(UnitOfWork):
    """Dossiers in a dict; what a commit publishes is kept in `outbox` and on `timeline`."""

    def __init__(self, dossiers: Iterable[Dossier] = ()) -> None:
        super().__init__()
        self.stored: dict[str, Dossier] = {dossier.id: copy.deepcopy(dossier) for dossier in dossiers}
        self.outbox: list[tuple[str, Event]] = []
        self.timeline: list[tuple[str, Event]] = []
        self.commits = 0

    def dossier(self, proposal_id: str) -> Dossier:
        return self.stored[proposal_id]

    def types(self) -> list[str]:
        return [event.TYPE for _, event in self.outbox]

    async def _fetch(self, proposal_id: str, *, with_records: bool) -> Dossier | None:
        stored = self.stored.get(proposal_id)
        if stored is None:
            return None
        return copy.deepcopy(stored) if with_records else Dossier(stored.proposal)

    async def _load_open(self) -> list[Dossier]:
        return [
            copy.deepcopy(d)
            for d in self.stored.values()
            if d.stage in OPEN_STAGES
            and (d.proposal.implemented_at is None or d.proposal.implementation_evaluation in ("due", "open"))
        ]

    async def _on_timeline(self, event_id: str) -> bool:
        return any(known == event_id for known, _ in self.timeline)

    async def _save(self, seen: list[tuple[Dossier, Snapshot]], consumed: list[tuple[Envelope, Event]]) -> None:
        for dossier, snapshot in seen:
            if snapshot.with_records or dossier.id not in self.stored:
                self.stored[dossier.id] = copy.deepcopy(Dossier(dossier.proposal, *_records(dossier)))
            else:
                self.stored[dossier.id].proposal = dossier.proposal
        self.timeline += [(envelope.id, event) for envelope, event in consumed]
        for dossier, _ in seen:
            for event, fixed in dossier.events:
                event_id = fixed or str(uuid.uuid4())
                self.outbox.append((event_id, event))
                self.timeline.append((event_id, event))
        self.commits += 1


def _records(dossier: Dossier) -> tuple[list[Any], ...]:
    return (
        dossier.replies,
        dossier.co_opinions,
        dossier.evaluations,
        dossier.measures,
        dossier.implementation_evaluations,
    )
