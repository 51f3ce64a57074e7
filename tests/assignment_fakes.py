"""An in-memory unit of work for assignment: its use cases run against it without a database."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.assignment import mapping
from services.assignment.domain import Assignment, AssignmentState, RoutingTable, UnitAnswer
from services.assignment.unit_of_work import UnitOfWork
from shared.events import (
    Actor,
    Event,
    ProposalFiled,
    ProposalSubmitted,
    Proposer,
    Role,
    SessionKind,
    Suggestion,
)
from shared.records import row_of

Row = dict[str, Any]


class FakeUnitOfWork(UnitOfWork):
    """Tables as dicts; what a commit publishes is kept in `outbox` as (event id, event)."""

    def __init__(self, table: RoutingTable | None = None) -> None:
        super().__init__()
        self.unit_rows: dict[str, Row] = {u.id: u.model_dump() for u in table.units} if table else {}
        self.leader_rows: dict[str, Row] = {leader.id: leader.model_dump() for leader in table.leaders} if table else {}
        self.rules: Row | None = table.rules_only().model_dump() if table else None
        self.proposals: dict[str, Row] = {}
        self.assignments: dict[str, Row] = {}
        self.responses: dict[str, dict[str, Row]] = {}
        self.keys: dict[str, Row] = {}
        self.outbox: list[tuple[str, Event]] = []
        self.commits = 0

    def types(self) -> list[str]:
        return [event.TYPE for _, event in self.outbox]

    async def units(self) -> dict[str, Row]:
        return copy.deepcopy(self.unit_rows)

    async def leaders(self) -> dict[str, Row]:
        return copy.deepcopy(self.leader_rows)

    async def routing_document(self) -> Row | None:
        return copy.deepcopy(self.rules)

    async def proposal(self, proposal_id: str) -> Row | None:
        return copy.deepcopy(self.proposals.get(proposal_id))

    async def proposals_in(self, ids: Sequence[str]) -> dict[str, Row]:
        return {pid: copy.deepcopy(row) for pid, row in self.proposals.items() if pid in ids}

    async def proposals_of_series(self, series_id: str) -> list[Row]:
        return [copy.deepcopy(row) for _, row in sorted(self.proposals.items()) if row.get("series_id") == series_id]

    async def key_designated(self, proposal_ids: Sequence[str]) -> list[str]:
        return [pid for pid in proposal_ids if pid in self.keys]

    async def assignments_name(self, unit_id: str) -> bool:
        return any(
            unit_id in [r["lead_unit"], *r["co_units"], *(r["split_units"] or [])] for r in self.assignments.values()
        )

    async def learned_history(self) -> list[Row]:
        return [
            {**self.proposals[row["proposal_id"]], "lead_unit": row["lead_unit"]}
            for row in self.assignments.values()
            if row["status"] in ("assigned", "accepted") and row["proposal_id"] in self.proposals
        ]

    async def _current(self, proposal_id: str) -> Assignment | None:
        rows = [row for row in self.assignments.values() if row["proposal_id"] == proposal_id]
        if not rows:
            return None
        row = max(rows, key=lambda r: r["suggested_at"])
        answers = mapping.unit_answers(self.responses.get(row["id"], {}))
        return Assignment(mapping.assignment_state(row), answers)

    async def _awaiting_answers(self) -> list[Assignment]:
        rows = [r for r in self.assignments.values() if r["status"] in ("assigned", "disputed")]
        ordered = sorted(rows, key=lambda r: (r["dispute_until"], r["id"]))
        return [Assignment(mapping.assignment_state(r)) for r in ordered]

    async def _responses(self, assignment_id: str) -> dict[str, UnitAnswer]:
        return mapping.unit_answers(self.responses.get(assignment_id, {}))

    async def _save(
        self, assignment: Assignment, loaded: AssignmentState | None, responses: dict[str, UnitAnswer]
    ) -> None:
        self.assignments[assignment.id] = row_of(assignment.state)
        self.responses[assignment.id] = {unit: row_of(a) for unit, a in assignment.responses.items()}

    async def _publish(self, events: list[tuple[Event, str | None]]) -> None:
        self.outbox += [(event_id or str(uuid.uuid4()), event) for event, event_id in events]
        self.commits += 1

    async def _put_proposal(self, proposal_id: str, values: Row, new: bool) -> None:
        self.proposals[proposal_id] = {**self.proposals.get(proposal_id, {"id": proposal_id}), **values}

    async def _put_unit(self, row: Row, new: bool) -> None:
        self.unit_rows[row["id"]] = dict(row)

    async def _delete_unit(self, unit_id: str) -> None:
        del self.unit_rows[unit_id]

    async def _put_leader(self, row: Row, new: bool) -> None:
        self.leader_rows[row["id"]] = dict(row)

    async def _put_routing_rules(self, document: Row, updated_by: str, at: datetime, new: bool) -> None:
        self.rules = dict(document)

    async def _add_key_proposals(self, rows: list[Row]) -> None:
        self.keys.update({row["proposal_id"]: dict(row) for row in rows})


def filed_events(proposal_id: str, at: datetime) -> list[Event]:
    """What intake publishes for a land-consolidation proposal (routed to dg-zrzyj): submitted, then filed."""
    actor = Actor(id="c-1", role=Role.COMMITTEE)
    proposer = Proposer(id="m-1", name="张委员")
    title = "关于推进全域土地综合整治的建议"
    return [
        ProposalSubmitted(
            proposal_id=proposal_id,
            actor=actor,
            title=title,
            body="我市土地利用碎片化问题突出。",
            category="经济建设",
            session_kind=SessionKind.INTERIM,
            first_proposer=proposer,
            suggestions=[Suggestion(number=1, text="编制整治规划")],
            submitted_at=at,
        ),
        ProposalFiled(
            proposal_id=proposal_id,
            actor=actor,
            filing_number=f"2026-{proposal_id[-4:]:0>4}",
            title=title,
            category="经济建设",
            first_proposer=proposer,
            suggestion_count=1,
            filed_at=at,
        ),
    ]
