"""What the audit log records of one event. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from shared.envelope import Envelope


def entry_from(envelope: Envelope, *, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One append-only entry: who did what to which proposal, when, and where it was read."""
    actor = envelope.data.get("actor") if isinstance(envelope.data.get("actor"), dict) else None
    return {
        "event_id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "subject": envelope.subject,
        "time": envelope.time,
        "actor_id": actor.get("id") if actor else None,
        "actor_role": actor.get("role") if actor else None,
        "actor_unit": actor.get("unit") if actor else None,
        "correlation_id": envelope.correlation_id or envelope.data.get("correlation_id"),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": envelope.data,
    }
