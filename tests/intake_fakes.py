"""An in-memory unit of work for intake: the use cases run against it without a database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from services.intake.domain import Proposal, ProposalStatus
from services.intake.unit_of_work import Snapshot, UnitOfWork, changes_of
from shared.events import Event


class FakeUnitOfWork(UnitOfWork):
    """Proposals in a dict; what a commit publishes is kept in `outbox`.

    `meanwhile`, if given, runs once just before the first save, on the stored proposals: what a
    concurrent request or the sweep did between this use case's load and its save."""

    def __init__(self, meanwhile: Callable[[dict[str, Proposal]], None] | None = None) -> None:
        super().__init__()
        self.stored: dict[str, Proposal] = {}
        self.outbox: list[Event] = []
        self.counters: dict[int, int] = {}
        self.meanwhile = meanwhile

    def proposal(self, proposal_id: str) -> Proposal:
        return self.stored[proposal_id]

    def types(self) -> list[str]:
        return [event.TYPE for event in self.outbox]

    async def _fetch(self, proposal_id: str) -> Proposal | None:
        stored = self.stored.get(proposal_id)
        return None if stored is None else Proposal(stored.state, list(stored.signers))

    async def _exists(self, proposal_id: str) -> bool:
        return proposal_id in self.stored

    async def _fetch_awaiting(self, due_before: date) -> list[Proposal]:
        return [
            Proposal(p.state, list(p.signers))
            for p in sorted(self.stored.values(), key=lambda p: (p.state.cosign_due, p.id))
            if p.status == ProposalStatus.AWAITING_COSIGNERS and p.state.cosign_due < due_before
        ]

    async def _merged_into(self, proposal_id: str) -> list[str]:
        return sorted(p.id for p in self.stored.values() if p.state.merged_into == proposal_id)

    async def _next_sequence(self, year: int) -> int:
        self.counters[year] = self.counters.get(year, 0) + 1
        return self.counters[year]

    async def _save(self, proposal: Proposal, snapshot: Snapshot) -> bool:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile(self.stored)
        if snapshot.state is not None:
            if not any(changes_of(proposal, snapshot)):
                return True
            if self.stored[proposal.id].status != snapshot.state.status:
                return False
        self.stored[proposal.id] = Proposal(proposal.state, list(proposal.signers))
        return True

    async def _publish(self, events: list[Event]) -> None:
        self.outbox += events
