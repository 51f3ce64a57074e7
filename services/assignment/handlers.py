"""Assignment's consumer of `proposalflow.proposals`: thin, the rules are in domain.py."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import service
from services.assignment.service import Clock, Context
from services.assignment.unit_of_work import SqlUnitOfWork
from shared.envelope import Envelope
from shared.events import ProposalFiled, ProposalSubmitted, parse_message
from shared.processor import Handler, Record


def proposals_handler(ctx: Context, clock: Clock) -> Handler:
    async def on_proposal_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        event = parse_message(envelope.type, envelope.data)
        if isinstance(event, ProposalSubmitted):
            await service.on_submitted(SqlUnitOfWork(conn), event)
        elif isinstance(event, ProposalFiled):
            await service.on_filed(SqlUnitOfWork(conn), event, ctx, clock())

    return on_proposal_event
