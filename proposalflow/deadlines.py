"""`proposalflow deadlines recompute`: move the stored deadlines of open proposals after the working-day
calendar changed (a year's 放假安排 declared in the policy, or a newer `holidays` package).

Each deadline is recomputed by the service that owns it, on that service's own data path: its unit of
work saves the new dates and stages the `…deadlines-changed` events in its outbox in one transaction, and
the service's relay publishes them (so notify, progress's read model and the portal follow). Progress goes
first: it owns the 重新办理 reply deadline and the 评价期, and it knows which proposals are still open;
assignment then recomputes the 交办 deadlines (办复期限, 会办意见期限, 异议期) of the proposals in their first
round of handling. A closed proposal, or one already answered, keeps the dates it was held to. Running it
again changes nothing: only a deadline that moved makes an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events import Actor, Role
from shared.policy import Policy, WorkingCalendar

RECOMPUTE_ACTOR = Actor(id="deadlines-recompute", role=Role.SYSTEM)
"""Who the `…deadlines-changed` events name: the operator's command, not a person's decision."""


@dataclass(frozen=True)
class MovedDeadline:
    """One deadline that moved: which service owns it, on which proposal, from when to when."""

    service: str
    proposal_id: str
    deadline: str
    previous: date | None
    due: date | None
    provisional: bool

    def line(self) -> str:
        def text(day: date | None) -> str:
            return day.isoformat() if day else "—"

        still = "  (still provisional: its year is not announced)" if self.provisional else ""
        return (
            f"{self.service:<10}  {self.proposal_id}  {self.deadline:<15} "
            f"{text(self.previous)} → {text(self.due)}{still}"
        )


@dataclass
class RecomputeReport:
    """What `recompute` moved (or, in a dry run, would move)."""

    moved: list[MovedDeadline] = field(default_factory=list)
    open_proposals: int = 0
    dry_run: bool = False

    @property
    def proposals(self) -> int:
        return len({item.proposal_id for item in self.moved})

    def lines(self) -> list[str]:
        lines = [item.line() for item in self.moved]
        verb = "would move" if self.dry_run else "moved"
        lines.append(
            f"{len(self.moved)} deadline(s) {verb} on {self.proposals} of {self.open_proposals} open proposal(s)"
            + ("" if self.dry_run or not self.moved else "; the events go out through each service's outbox relay")
        )
        return lines


def default_reason(policy: Policy) -> str:
    years = ", ".join(str(year) for year in sorted(policy.calendar.declared_years))
    return f"法定节假日安排调整 (declared years: {years})" if years else "法定节假日安排调整"


async def recompute(
    progress_engine: AsyncEngine,
    assignment_engine: AsyncEngine,
    policy: Policy,
    now: datetime,
    *,
    reason: str | None = None,
    dry_run: bool = False,
) -> RecomputeReport:
    """Recompute the open proposals' deadlines on ``policy``'s calendar, through progress's and then
    assignment's unit of work (state and events together); ``dry_run`` rolls both back."""
    from services.assignment import service as assignment_service
    from services.assignment.service import Context, Router
    from services.assignment.unit_of_work import SqlUnitOfWork as AssignmentUnitOfWork
    from services.progress import service as progress_service
    from services.progress.unit_of_work import SqlUnitOfWork as ProgressUnitOfWork

    calendar = WorkingCalendar.from_policy(policy)
    why = reason or default_reason(policy)
    report = RecomputeReport(dry_run=dry_run)
    async with progress_engine.connect() as conn:
        transaction = await conn.begin()
        progress = await progress_service.recompute_deadlines(
            ProgressUnitOfWork(conn), policy, calendar, RECOMPUTE_ACTOR, why, now
        )
        await (transaction.rollback() if dry_run else transaction.commit())
    report.open_proposals = len(progress.open_proposals)
    for event in progress.changed:
        name = "evaluation_due" if event.kind == "evaluation" else "reply_due"
        report.moved.append(
            MovedDeadline(
                "progress", event.proposal_id, name, event.previous_due, event.due, event.provisional_calendar
            )
        )
    ctx = Context(policy, calendar, Router())
    async with assignment_engine.connect() as conn:
        transaction = await conn.begin()
        moved = await assignment_service.recompute_deadlines(
            AssignmentUnitOfWork(conn), progress.first_round, ctx, RECOMPUTE_ACTOR, why
        )
        await (transaction.rollback() if dry_run else transaction.commit())
    report.moved += [
        MovedDeadline("assignment", item.proposal_id, item.deadline, item.previous, item.due, item.provisional)
        for item in moved
    ]
    return report
