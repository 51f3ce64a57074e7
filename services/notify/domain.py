"""Who is told what (通知规则), and how: pure functions, no I/O.

Recipients are strings: a member's or leader's id, `unit:<unit id>` for a handling unit, or a group
(`committee`, `dispatcher`). Notify keeps its own record of each proposal (:class:`ProposalView`),
built from the lifecycle events, so that a rule can name "the lead unit" or "the proposers".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.notify.rules import Channel, CompiledRule, RecipientKind
from shared.backoff import backoff_delay
from shared.events import (
    ASSIGNMENTS,
    HANDLING,
    AssignmentReassigned,
    Event,
    KeyProposalDesignated,
    ProposalAssigned,
    ProposalFiled,
    ProposalMerged,
    ProposalResubmitted,
    ProposalReviewStarted,
    UnitRef,
)

COMMITTEE = "committee"
DISPATCHER = "dispatcher"


def unit_recipient(unit_id: str) -> str:
    return f"unit:{unit_id}"


@dataclass(frozen=True)
class ProposalView:
    """What notify knows of one proposal: enough to name it and to find its people."""

    id: str
    title: str
    signers: tuple[str, ...]
    filing_number: str | None = None
    lead_unit: UnitRef | None = None
    co_units: tuple[UnitRef, ...] = ()
    split_units: tuple[UnitRef, ...] = ()
    supervising_leader: str | None = None
    leading_leader: str | None = None


def updated_view(view: ProposalView, event: Event) -> ProposalView:
    """The record after an event: signers confirmed, units assigned, leaders designated."""
    match event:
        case ProposalReviewStarted() if event.trigger != "resubmitted":
            confirmed = {signer.id for signer in event.confirmed_cosigners}
            return replace(view, signers=(view.signers[0], *(s for s in view.signers[1:] if s in confirmed)))
        case ProposalResubmitted():
            return replace(view, title=event.title)
        case ProposalFiled():
            signers = (event.first_proposer.id, *(cosigner.id for cosigner in event.cosigners))
            return replace(view, title=event.title, filing_number=event.filing_number, signers=signers)
        case ProposalMerged() if event.first_proposer is not None:
            return replace(view, signers=(event.first_proposer.id, *(cosigner.id for cosigner in event.cosigners)))
        case ProposalAssigned() | AssignmentReassigned():
            return replace(
                view,
                lead_unit=event.lead_unit,
                co_units=tuple(event.co_units),
                split_units=tuple(event.split_units),
            )
        case KeyProposalDesignated():
            return replace(view, supervising_leader=event.supervising_leader, leading_leader=event.leading_leader)
        case _:
            return view


def changes_view(event: Event) -> bool:
    """Whether notify must know the proposal before it can take this event in."""
    return isinstance(
        event,
        ProposalReviewStarted
        | ProposalResubmitted
        | ProposalFiled
        | ProposalMerged
        | ProposalAssigned
        | AssignmentReassigned
        | KeyProposalDesignated,
    )


def missing_prerequisite(event: Event, view: ProposalView) -> str | None:
    """Why notify must wait before taking this event in, or None.

    Topics carry no order between them: an assignment can be read before the filing it follows, a
    deadline before the assignment. Since 交办 only follows 立案 and 办理 only follows 交办, an event
    that arrives early waits (is parked) until the record has caught up, so the right signers and
    units are told."""
    if event.TOPIC == ASSIGNMENTS and view.filing_number is None:
        return f"proposal {view.id} is not filed yet here (waiting for its filed event)"
    if event.TOPIC == HANDLING and view.lead_unit is None:
        return f"proposal {view.id} is not assigned yet here (waiting for its assigned event)"
    return None


def _event_units(event: Event) -> list[str]:
    """The unit (`unit`, an id or a UnitRef) or units (`units`) the event itself names."""
    named: list[Any] = [getattr(event, "unit", None), *getattr(event, "units", [])]
    ids = [unit.id if isinstance(unit, UnitRef) else unit for unit in named]
    return [unit_recipient(unit_id) for unit_id in ids if isinstance(unit_id, str) and unit_id]


def _units(view: ProposalView) -> list[UnitRef]:
    lead = [view.lead_unit] if view.lead_unit else []
    return [*lead, *view.co_units, *view.split_units]


def removed_units(previous: ProposalView, view: ProposalView) -> list[UnitRef]:
    """The units that had the proposal before the event and have no part in it after (改办: the
    units a reassignment took it from). A unit moved from 主办 to 会办 keeps a part and is not here."""
    kept = {unit.id for unit in _units(view)}
    removed: dict[str, UnitRef] = {}
    for unit in _units(previous):
        if unit.id not in kept:
            removed.setdefault(unit.id, unit)
    return list(removed.values())


def recipients_of(
    kind: RecipientKind, event: Event, view: ProposalView, previous: ProposalView | None = None
) -> list[str]:
    """The recipients a rule's kind names for this event and proposal (possibly none); `previous` is
    the record before the event (the units a reassignment removed are read from it)."""
    match kind:
        case RecipientKind.PROPOSERS:
            return list(view.signers)
        case RecipientKind.FIRST_PROPOSER:
            return list(view.signers[:1])
        case RecipientKind.COSIGNERS:
            return list(view.signers[1:])
        case RecipientKind.LEAD_UNIT:
            return [unit_recipient(view.lead_unit.id)] if view.lead_unit else []
        case RecipientKind.CO_UNITS:
            return [unit_recipient(unit.id) for unit in view.co_units]
        case RecipientKind.SPLIT_UNITS:
            return [unit_recipient(unit.id) for unit in view.split_units]
        case RecipientKind.REPLYING_UNITS:
            lead = [view.lead_unit] if view.lead_unit else []
            return [unit_recipient(unit.id) for unit in (*lead, *view.split_units)]
        case RecipientKind.REMOVED_UNITS:
            return [unit_recipient(unit.id) for unit in removed_units(previous or view, view)]
        case RecipientKind.EVENT_UNIT:
            return _event_units(event)
        case RecipientKind.EVALUATING_SIGNER:
            signer = getattr(event, "signer_id", None)
            return [signer] if isinstance(signer, str) and signer else []
        case RecipientKind.SUPERVISING_LEADER:
            # The event's own word first: a deadline notice names the leader its writer knew, and
            # notify may not have read the designation yet (another topic, no order between them).
            leader = getattr(event, "supervising_leader", None) or view.supervising_leader
            return [leader] if isinstance(leader, str) and leader else []
        case RecipientKind.LEADING_LEADER:
            return [view.leading_leader] if view.leading_leader else []
        case RecipientKind.COMMITTEE:
            return [COMMITTEE]
        case RecipientKind.DISPATCHER:
            return [DISPATCHER]


def possible_recipients(data: dict[str, Any], proposal: dict[str, Any] | None) -> set[str]:
    """Everyone an event (its data as sent) about a proposal (notify's stored row, if any) could notify,
    whatever the rules: more than the rules name, never fewer, so a batch can read their contacts at once."""
    people: set[str] = {COMMITTEE, DISPATCHER}
    units: list[Any] = []
    for source in (data, proposal or {}):
        for key in ("signer_id", "supervising_leader", "leading_leader"):
            if isinstance(source.get(key), str):
                people.add(source[key])
        for person in [source.get("first_proposer"), *(source.get("cosigners") or [])]:
            if isinstance(person, dict) and isinstance(person.get("id"), str):
                people.add(person["id"])
        people.update(signer for signer in source.get("signers") or [] if isinstance(signer, str))
        units += [source.get("unit"), source.get("lead_unit"), *(source.get("units") or [])]
        units += [*(source.get("co_units") or []), *(source.get("split_units") or [])]
    for unit in units:
        unit_id = unit.get("id") if isinstance(unit, dict) else unit
        if isinstance(unit_id, str) and unit_id:
            people.add(unit_recipient(unit_id))
    return people


@dataclass(frozen=True)
class Notice:
    """One message to one recipient on one channel, rendered."""

    recipient: str
    channel: Channel
    title: str
    body: str


def template_context(
    event: Event, view: ProposalView, link: str, previous: ProposalView | None = None
) -> dict[str, Any]:
    return {
        "event": event.model_dump(mode="python"),
        "proposal": {
            "id": view.id,
            "title": view.title,
            "filing_number": view.filing_number,
            "lead_unit": view.lead_unit.model_dump() if view.lead_unit else None,
            "co_units": [unit.model_dump() for unit in view.co_units],
            "split_units": [unit.model_dump() for unit in view.split_units],
            "key": view.supervising_leader is not None or bool(getattr(event, "supervising_leader", None)),
            "removed_units": [unit.model_dump() for unit in removed_units(previous or view, view)],
        },
        "link": link,
    }


def notices_for(
    rules: Sequence[CompiledRule],
    event_type: str,
    event: Event,
    view: ProposalView,
    link: str,
    previous: ProposalView | None = None,
) -> list[Notice]:
    """Every notice the rules give for this event: one per (recipient, channel); the first rule that
    names a (recipient, channel) pair writes its message, so nobody is told the same thing twice.
    `view` is the record after the event, `previous` the one before it (None: the same)."""
    context = template_context(event, view, link, previous)
    notices: dict[tuple[str, Channel], Notice] = {}
    for rule in rules:
        if not rule.matches(event_type, event):
            continue
        for kind in rule.rule.recipient_kinds():
            for recipient in recipients_of(kind, event, view, previous):
                for channel in rule.rule.channels:
                    if (recipient, channel) not in notices:
                        title, body = rule.render(channel, context)
                        notices[(recipient, channel)] = Notice(recipient, channel, title, body)
    return list(notices.values())


def rules_apply(rules: Sequence[CompiledRule], event_type: str, event: Event) -> bool:
    return any(rule.matches(event_type, event) for rule in rules)


# Preferences and addresses ------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """通讯录: how to reach one recipient, and what they want (个人偏好)."""

    id: str
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = None
    channels: frozenset[Channel] | None = None
    """The outside channels the recipient wants; None means every channel they have an address for."""
    quiet_hours: tuple[time, time] | None = None
    """免打扰时段 for SMS, local time; may wrap midnight (22:00–07:00)."""

    def address(self, channel: Channel) -> str | None:
        return {
            Channel.INBOX: self.id,
            Channel.EMAIL: self.email,
            Channel.SMS: self.phone,
            Channel.WEBHOOK: self.webhook_url,
        }[channel]


def deliverable_address(channel: Channel, contact: Contact | None, configured: frozenset[Channel]) -> str | None:
    """Where an outside-channel notice goes, or None when it does not go at all: the channel is not
    configured here, the recipient has no contact entry or no address for it, or they turned it off."""
    if channel not in configured or contact is None:
        return None
    if contact.channels is not None and channel not in contact.channels:
        return None
    return contact.address(channel)


def in_quiet_hours(moment: datetime, quiet_hours: tuple[time, time], timezone: str) -> bool:
    start, end = quiet_hours
    local = moment.astimezone(ZoneInfo(timezone)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def sms_not_before(moment: datetime, quiet_hours: tuple[time, time] | None, timezone: str) -> datetime:
    """短信免打扰: an SMS due inside the recipient's quiet hours waits until they end (local time)."""
    if quiet_hours is None or not in_quiet_hours(moment, quiet_hours, timezone):
        return moment
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    end = datetime.combine(local.date(), quiet_hours[1], tzinfo=zone)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(moment.tzinfo)


# Delivery ------------------------------------------------------------------------------------------


def next_attempt_at(
    now: datetime, attempts: int, *, max_attempts: int, base_delay: float, max_delay: float
) -> datetime | None:
    """After `attempts` failed sends: when to try again (exponential backoff with jitter), or None
    when the last attempt has been spent and the delivery is failed."""
    if attempts >= max_attempts:
        return None
    return now + timedelta(seconds=backoff_delay(attempts, base_delay, max_delay))


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`, hex, as `sha256=<hex>` (the receiver recomputes it and
    refuses a stale timestamp, so a captured request cannot be replayed later)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def mask_email(email: str) -> str:
    """zhangsan@example.com → z***@example.com: enough to tell addresses apart in logs, no more."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678."""
    digits = phone.strip()
    if len(digits) < 7:
        return "***"
    return f"{digits[:3]}****{digits[-4:]}"


def masked_address(channel: Channel, address: str) -> str:
    """An address as it may appear in logs (个人信息保护)."""
    if channel == Channel.EMAIL:
        return mask_email(address)
    if channel == Channel.SMS:
        return mask_phone(address)
    return address.split("?", 1)[0]  # a webhook's query string may carry a token
