"""Completes FastStream's AsyncAPI 3.0 document with what ProposalFlow's wire format adds:
the CloudEvents headers, and the payload of every subscribed topic (FastStream sees raw records there,
because decoding is ProposalFlow's own: binary and structured CloudEvents, inbox, dead letters)."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.events import ALL_TOPICS, Message, messages_on

CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 binary content mode attributes (structured mode is accepted on input).",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "Unique with ce_source."},
        "ce_source": {"type": "string", "description": "/proposalflow/<service>, or the outside system."},
        "ce_type": {"type": "string", "description": "proposalflow.<thing>.<what-happened>.v<N>"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "The proposal id; also the Kafka key."},
        "ce_correlationid": {"type": "string", "description": "The command or HTTP request that caused it."},
        "traceparent": {"type": "string", "description": "W3C trace context."},
        "content-type": {"type": "string", "const": "application/json"},
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
}


def complete(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    messages = components.get("messages", {})
    channels = document.get("channels", {})
    for channel in channels.values():
        topic = channel.get("address")
        for ref in channel.get("messages", {}).values():
            name = ref["$ref"].rsplit("/", 1)[-1]
            message = messages.get(name)
            if message is None:
                continue
            message["headers"] = CLOUDEVENTS_HEADERS
            message["correlationId"] = {"location": "$message.header#/ce_correlationid"}
            if not _untyped(message.get("payload", {}), schemas):
                continue
            models = _messages_at(topic) if topic else []
            if not models:
                continue
            _, definitions = models_json_schema(
                [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
            )
            schemas.update(definitions.get("$defs", {}))
            message["payload"] = {"oneOf": [{"$ref": f"#/components/schemas/{model.__name__}"} for model in models]}
    still_used = {m.get("payload", {}).get("$ref", "").rsplit("/", 1)[-1] for m in messages.values()}
    for name in [name for name, schema in schemas.items() if _is_any(schema) and name not in still_used]:
        del schemas[name]
    return document


def _messages_at(address: str) -> list[type[Message]]:
    """The types on a channel: one topic, or every ProposalFlow topic a subscription pattern (`^…$`) matches."""
    if not address.startswith("^"):
        return messages_on(address)
    pattern = re.compile(address)
    return [model for topic in ALL_TOPICS if pattern.match(topic) for model in messages_on(topic)]


def _is_any(schema: dict[str, Any]) -> bool:
    """FastStream's schema of a body it knows nothing about: no type, no properties, a title at most."""
    return set(schema) <= {"title"}


def _untyped(payload: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """The payload is FastStream's placeholder (the subscriber takes the raw message, not a model)."""
    ref = payload.get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    return ref.startswith("#/components/schemas/") and (
        name == "EmptyPayload" or _is_any(schemas.get(name, {"type": "object"}))
    )
