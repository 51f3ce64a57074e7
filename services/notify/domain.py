"""Who is told what (通知规则), for the skeleton's events. Pure: no I/O.

Recipients are strings: a member's id, or `unit:<unit id>` for a handling unit's inbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.events import Event, ProposalAssigned, ProposalFiled, ProposalNotFiled


@dataclass(frozen=True)
class Notice:
    """One message to one recipient."""

    recipient: str
    title: str
    body: str


def unit_recipient(unit_id: str) -> str:
    return f"unit:{unit_id}"


def notices_for(event: Event, *, title: str, signers: Sequence[str]) -> list[Notice]:
    """The notices an event causes; the proposal's title and signers come from notify's own records."""
    match event:
        case ProposalFiled():
            return [
                Notice(signer, "提案已立案", f"您的提案《{title}》已立案, 案号 {event.filing_number}。")
                for signer in signers
            ]
        case ProposalNotFiled():
            return [
                Notice(signer, "提案不予立案", f"您的提案《{title}》不予立案。理由: {event.reason}")
                for signer in signers
            ]
        case ProposalAssigned():
            co = "、".join(unit.name for unit in event.co_units)
            handled_by = f"主办单位 {event.lead_unit.name}" + (f", 会办单位 {co}" if co else "")
            to_proposers = [
                Notice(signer, "提案已交办", f"您的提案《{title}》已交办: {handled_by}。") for signer in signers
            ]
            due = event.reply_due.isoformat()
            to_lead = Notice(
                unit_recipient(event.lead_unit.id), "新交办提案", f"提案《{title}》交由贵单位主办, 请于 {due} 前答复。"
            )
            to_co = [
                Notice(
                    unit_recipient(unit.id),
                    "新会办提案",
                    f"提案《{title}》请贵单位会办, 会办意见请送主办单位 {event.lead_unit.name}。",
                )
                for unit in event.co_units
            ]
            return [*to_proposers, to_lead, *to_co]
        case _:
            return []
