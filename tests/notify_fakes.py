"""An in-memory unit of work for notify: its use case runs against it without a database."""

from __future__ import annotations

from services.notify.domain import Contact, ProposalView
from services.notify.unit_of_work import Row, UnitOfWork
from shared.events import Event


class FakeUnitOfWork(UnitOfWork):
    """Proposals, contacts, notifications and deliveries in dicts (kept once per id, as the tables keep
    them); what a commit stages is kept in `outbox`, with each event's id."""

    def __init__(self, contacts: dict[str, Contact] | None = None) -> None:
        super().__init__()
        self.proposals: dict[str, ProposalView] = {}
        self.directory: dict[str, Contact] = dict(contacts or {})
        self.notifications: dict[str, Row] = {}
        self.deliveries: dict[str, Row] = {}
        self.outbox: list[tuple[Event, str]] = []

    async def _proposal(self, proposal_id: str) -> ProposalView | None:
        return self.proposals.get(proposal_id)

    async def _contacts(self, ids: list[str]) -> dict[str, Contact]:
        return {contact_id: self.directory[contact_id] for contact_id in ids if contact_id in self.directory}

    async def _insert_proposal(self, view: ProposalView) -> None:
        assert view.id not in self.proposals, f"proposal {view.id} inserted twice"
        self.proposals[view.id] = view

    async def _update_proposal(self, before: ProposalView, after: ProposalView) -> None:
        self.proposals[after.id] = after

    async def _add_notifications(self, rows: list[Row]) -> set[str]:
        new = {row["id"] for row in rows if row["id"] not in self.notifications}
        for row in rows:
            self.notifications.setdefault(row["id"], row)
        return new

    async def _plan_deliveries(self, rows: list[Row]) -> None:
        for row in rows:
            self.deliveries.setdefault(row["id"], row)

    async def _publish(self, events: list[tuple[Event, str]]) -> None:
        self.outbox += events
