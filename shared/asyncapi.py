"""Completes FastStream's AsyncAPI 3.0 document with what ProposalFlow's wire format adds.

FastStream sees one publisher per topic and raw records on the subscribed topics (decoding is
ProposalFlow's own: binary and structured CloudEvents, inbox, dead letters), so it would describe each
channel as one message with a union payload. Here every channel on a ProposalFlow topic gets one message
per CloudEvents type that travels on it, generated from the models in `shared/events.py`:

- `<type>` (e.g. `proposalflow.proposal.filed.v1`): binary content mode, the way ProposalFlow writes
  every event: the `ce_*` headers (with `ce_type` fixed to the type, so a tool maps a record to its
  message by that header), `content-type: application/json`, the data as the payload, the proposal
  id as the Kafka key; with an example.
- `<type>.structured`: structured content mode (`content-type: application/cloudevents+json`, the whole
  CloudEvent as one JSON object with the data under `data`). Every ProposalFlow consumer accepts it, so
  it is listed on the channels a service receives from, never on those it sends to.

A dead-letter topic's channel gets one message: the original record as it came, with the `x-dlq-*`
headers.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from shared import events
from shared.envelope import CLOUDEVENTS_JSON, JSON
from shared.examples import EXAMPLE_SOURCES, EXAMPLE_TIME, example_id, example_of
from shared.settings import SERVICES

KAFKA_BINDING_VERSION = "0.4.0"

_CE_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "specversion": {"type": "string", "const": "1.0"},
    "id": {"type": "string", "description": "Unique with the source; consumers deduplicate on it."},
    "source": {
        "type": "string",
        "description": "/proposalflow/<service> for ProposalFlow's events; the outside system's allow-listed "
        "source (PROPOSALFLOW_ALLOWED_SOURCES) for a command.",
    },
    "time": {"type": "string", "format": "date-time"},
    "subject": {"type": "string", "description": "The proposal id; also the Kafka key."},
    "correlationid": {
        "type": "string",
        "description": "The command or HTTP request that caused the event: a command's own correlationid if it "
        "sent one, else the command's id (docs/integration.md).",
    },
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original record's headers, and where and why it failed (docs/event-catalog.md).",
    "properties": {
        name: {"type": "string"}
        for name in (
            "x-dlq-error",
            "x-dlq-consumer",
            "x-dlq-original-topic",
            "x-dlq-original-partition",
            "x-dlq-original-offset",
            "x-dlq-attempts",
            "x-dlq-failed-at",
        )
    },
    "required": ["x-dlq-error", "x-dlq-original-topic", "x-dlq-original-partition", "x-dlq-original-offset"],
}


def binary_headers(ce_type: str) -> dict[str, Any]:
    """The Kafka headers of one type in binary content mode."""
    attributes = {f"ce_{name}": schema for name, schema in _CE_ATTRIBUTES.items()}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 binary content mode: the attributes as `ce_*` headers.",
        "properties": {
            **attributes,
            "ce_type": {"type": "string", "const": ce_type},
            "traceparent": {"type": "string", "description": "W3C trace context."},
            "content-type": {"type": "string", "const": JSON},
        },
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    }


def structured_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Structured content mode: the CloudEvent is the record's value. Send this content-type "
        "(a value without it and without ce_* headers is read as structured when it carries `specversion`).",
        "properties": {
            "content-type": {"type": "string", "const": CLOUDEVENTS_JSON},
            "traceparent": {"type": "string", "description": "W3C trace context."},
        },
    }


def structured_payload(ce_type: str, data_schema: str) -> dict[str, Any]:
    """The whole CloudEvent as one JSON object (structured content mode), its data under `data`."""
    return {
        "type": "object",
        "properties": {
            **_CE_ATTRIBUTES,
            "type": {"type": "string", "const": ce_type},
            "datacontenttype": {"type": "string", "const": JSON},
            "data": {"$ref": f"#/components/schemas/{data_schema}"},
        },
        "required": ["specversion", "id", "source", "type", "data"],
    }


def _kafka_key() -> dict[str, Any]:
    return {
        "bindingVersion": KAFKA_BINDING_VERSION,
        "key": {
            "type": "string",
            "description": "The proposal id (the CloudEvents subject): one proposal's "
            "events stay in order within a topic.",
        },
    }


def _source_of(model: type[events.Message]) -> str:
    if issubclass(model, events.Command):
        return EXAMPLE_SOURCES.get(model.TOPIC, "/your/system")
    writer = events.TOPIC_WRITERS.get(model.TOPIC, "")
    return events.source_of(writer)


def _describe(model: type[events.Message]) -> tuple[str, str]:
    doc = (model.__doc__ or "").strip()
    summary = doc.splitlines()[0] if doc else model.TYPE
    return summary, doc


def type_messages(model: type[events.Message]) -> dict[str, dict[str, Any]]:
    """The binary and the structured message of one CloudEvents type, by message id."""
    summary, doc = _describe(model)
    data = example_of(model)
    subject = str(data.get("proposal_id") or "")
    correlation = data.get("correlation_id") if issubclass(model, events.Event) else None
    event_id = example_id(model.TYPE)
    headers: dict[str, Any] = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": _source_of(model),
        "ce_type": model.TYPE,
        "ce_time": EXAMPLE_TIME,
        "content-type": JSON,
    }
    if subject:
        headers["ce_subject"] = subject
    if correlation:
        headers["ce_correlationid"] = correlation
    common = {
        "title": model.TYPE,
        "summary": summary,
        "description": doc,
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "bindings": {"kafka": _kafka_key()},
        "x-cloudevents-type": model.TYPE,
        "x-kafka-topic": model.TOPIC,
    }
    structured_example = {
        "specversion": "1.0",
        "id": event_id,
        "source": headers["ce_source"],
        "type": model.TYPE,
        "time": EXAMPLE_TIME,
        "datacontenttype": JSON,
        **({"subject": subject} if subject else {}),
        **({"correlationid": correlation} if correlation else {}),
        "data": data,
    }
    return {
        model.TYPE: {
            **common,
            "name": model.__name__,
            "contentType": JSON,
            "headers": binary_headers(model.TYPE),
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "examples": [
                {"name": "binary", "summary": f"{model.TYPE} in binary mode", "headers": headers, "payload": data}
            ],
        },
        f"{model.TYPE}.structured": {
            **common,
            "name": f"{model.__name__}Structured",
            "title": f"{model.TYPE} (structured mode)",
            "contentType": CLOUDEVENTS_JSON,
            "correlationId": {"location": "$message.payload#/correlationid"},
            "headers": structured_headers(),
            "payload": structured_payload(model.TYPE, model.__name__),
            "examples": [
                {
                    "name": "structured",
                    "summary": f"{model.TYPE} in structured mode",
                    "headers": {"content-type": CLOUDEVENTS_JSON},
                    "payload": structured_example,
                }
            ],
        },
    }


def dead_letter_message(topic: str) -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": f"{topic} dead letter",
        "summary": "A record a consumer could never process, as it came, with where and why it failed.",
        "headers": DEAD_LETTER_HEADERS,
        "payload": {"description": "The original record's value (null when it was too large to resend)."},
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING_VERSION}},
    }


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """One message per CloudEvents type on every ProposalFlow topic (binary, and structured where the
    service receives), the dead-letter message on dead-letter topics, and only the schemas still used."""
    info = document.setdefault("info", {})
    info["description"] = (
        info.get("description", "").split(" (CloudEvents")[0]
        + " (CloudEvents 1.0: binary content mode; structured mode accepted wherever a service receives)."
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    messages: dict[str, Any] = components.setdefault("messages", {})
    _split_pattern_channels(document)
    channels = document.get("channels", {})
    receiving = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]
        for op in document.get("operations", {}).values()
        if op.get("action") == "receive"
    }
    models_used: dict[str, type[events.Message]] = {}
    replaced: dict[str, list[str]] = {}
    for channel_id, channel in channels.items():
        topic = channel.get("address", "")
        old = [ref["$ref"].rsplit("/", 1)[-1] for ref in channel.get("messages", {}).values()]
        if topic.startswith("proposalflow.dlq."):
            ids = ["dead-letter"]
            messages["dead-letter"] = dead_letter_message("proposalflow.dlq.<service>")
        else:
            models = _messages_at(topic)
            if not models:
                continue
            ids = []
            for model in models:
                models_used[model.__name__] = model
                for message_id, message in type_messages(model).items():
                    if message_id.endswith(".structured") and channel_id not in receiving:
                        continue
                    messages[message_id] = message
                    ids.append(message_id)
        for name in old:
            messages.pop(name, None)
        channel["messages"] = {message_id: {"$ref": f"#/components/messages/{message_id}"} for message_id in ids}
        replaced[channel_id] = ids
    for operation in document.get("operations", {}).values():
        channel_id = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        if channel_id in replaced:
            operation["messages"] = [
                {"$ref": f"#/channels/{channel_id}/messages/{message_id}"} for message_id in replaced[channel_id]
            ]
    if models_used:
        _, definitions = models_json_schema(
            [(model, "validation") for model in models_used.values()], ref_template="#/components/schemas/{model}"
        )
        schemas.update(definitions.get("$defs", {}))
    _drop_unused(document)
    return document


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _split_pattern_channels(document: dict[str, Any]) -> None:
    """A consumer subscribed by pattern (the inbound topics with every outside system's own, docs/decisions.md)
    has a regex for its channel address, which no integrator's tool can map a record to: give it one channel
    per ProposalFlow topic the pattern matches, an inbound one saying that each outside system writes its
    own `<topic>.<system>`, and one receive operation each."""
    channels = document.get("channels", {})
    operations = document.get("operations", {})
    for channel_id, channel in list(channels.items()):
        address = channel.get("address", "")
        if not address.startswith("^"):
            continue
        pattern = re.compile(address)
        del channels[channel_id]
        ops = {op_id: op for op_id, op in operations.items() if op["channel"]["$ref"].endswith(f"/{channel_id}")}
        for op_id in ops:
            del operations[op_id]
        first: dict[str, Any] = next(iter(ops.values()), {"action": "receive"})
        action = str(first.get("action", "receive"))
        known = [*events.ALL_TOPICS, *(events.dlq_topic(service) for service in SERVICES)]
        for topic in (t for t in known if pattern.match(t)):
            new_id = f"{topic}:{'subscribe' if action == 'receive' else 'publish'}"
            description = channel.get("description", "")
            if topic in events.INBOUND_TOPICS:
                description = (
                    f"{description} Read together with every outside system's own topic `{topic}.<system>` "
                    "(written only by that system's Kafka user; the same messages)."
                ).strip()
            channels[new_id] = {**channel, "address": topic, "description": description, "messages": {}}
            operations[new_id] = {
                **first,
                "channel": {"$ref": f"#/channels/{new_id}"},
                "messages": [],
            }


def _messages_at(address: str) -> list[type[events.Message]]:
    """The types on a channel: one topic, or every ProposalFlow topic a subscription pattern (`^…$`) matches."""
    if not address.startswith("^"):
        return events.messages_on(address)
    pattern = re.compile(address)
    return [model for topic in events.ALL_TOPICS if pattern.match(topic) for model in events.messages_on(topic)]


def _drop_unused(document: dict[str, Any]) -> None:
    """Remove the components FastStream made for the union payloads that per-type messages replaced."""
    components = document["components"]
    outside = {key: value for key, value in document.items() if key != "components"}
    used_messages = {ref.rsplit("/", 1)[-1] for ref in _refs(outside) if ref.startswith("#/components/messages/")}
    components["messages"] = {k: v for k, v in components.get("messages", {}).items() if k in used_messages}
    schemas = components.get("schemas", {})
    pending = [ref for ref in _refs(components["messages"]) if ref.startswith("#/components/schemas/")]
    kept: set[str] = set()
    while pending:
        name = pending.pop().rsplit("/", 1)[-1]
        if name in kept or name not in schemas:
            continue
        kept.add(name)
        pending.extend(ref for ref in _refs(schemas[name]) if ref.startswith("#/components/schemas/"))
    components["schemas"] = {k: v for k, v in schemas.items() if k in kept}
