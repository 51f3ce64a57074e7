"""CloudEvents 1.0 envelope over Kafka.

Binary content mode is what ProposalFlow writes: the attributes travel as `ce_*` headers, the
data as the JSON value, `content-type: application/json`. Structured mode
(`content-type: application/cloudevents+json`, the whole event as one JSON object) is accepted
on input, so an outside system may send either.

Extensions used by ProposalFlow: `correlationid` (back to the command or HTTP request that caused
the event) and the W3C `traceparent` header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.jsonguard import MAX_EVENT_JSON_DEPTH, json_depth_exceeds

SPEC_VERSION = "1.0"
JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"

_REQUIRED = ("id", "source", "type", "specversion")
_KNOWN = ("id", "source", "type", "specversion", "time", "subject", "datacontenttype", "dataschema")


class EnvelopeError(ValueError):
    """A Kafka record that is not a valid CloudEvent; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One CloudEvent: its context attributes and its JSON data."""

    type: str
    source: str
    data: dict[str, Any]
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    specversion: str = SPEC_VERSION
    datacontenttype: str = JSON
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        return self.extensions.get("correlationid")

    @property
    def traceparent(self) -> str | None:
        return self.extensions.get("traceparent")


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise EnvelopeError("CloudEvents time must carry a timezone")
    return value.isoformat().replace("+00:00", "Z")


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EnvelopeError(f"ce_time {value!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise EnvelopeError(f"ce_time {value!r} has no timezone offset")
    return parsed


def encode_data(data: Mapping[str, Any]) -> bytes:
    """The event data as compact UTF-8 JSON (Chinese text kept readable)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def to_kafka_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """Binary content mode headers for an envelope."""
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", envelope.specversion.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_time", _format_time(envelope.time).encode()),
        ("content-type", envelope.datacontenttype.encode()),
    ]
    if envelope.subject is not None:
        headers.append(("ce_subject", envelope.subject.encode()))
    for name, value in envelope.extensions.items():
        header = "traceparent" if name == "traceparent" else f"ce_{name}"
        headers.append((header, value.encode()))
    return headers


def to_kafka(envelope: Envelope) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key (the subject, i.e. the proposal id), value and headers of the Kafka record."""
    key = envelope.subject.encode() if envelope.subject is not None else None
    return key, encode_data(envelope.data), to_kafka_headers(envelope)


def _header_dict(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, raw in headers:
        if raw is None:
            continue
        try:
            result[name.lower()] = raw.decode()
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"header {name!r} is not UTF-8") from exc
    return result


def _load_json_object(value: bytes | None, what: str) -> dict[str, Any]:
    if value is None:
        raise EnvelopeError(f"{what} is empty")
    if json_depth_exceeds(value, MAX_EVENT_JSON_DEPTH):
        raise EnvelopeError(f"{what} nests arrays or objects more than {MAX_EVENT_JSON_DEPTH} levels deep")
    try:
        loaded = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise EnvelopeError(f"{what} must be a JSON object, got {type(loaded).__name__}")
    return loaded


def _build(attrs: Mapping[str, Any], data: dict[str, Any], extensions: dict[str, str]) -> Envelope:
    missing = [name for name in _REQUIRED if not attrs.get(name)]
    if missing:
        raise EnvelopeError(f"missing required CloudEvents attribute(s): {', '.join(missing)}")
    if attrs["specversion"] != SPEC_VERSION:
        raise EnvelopeError(f"unsupported CloudEvents specversion {attrs['specversion']!r}; expected 1.0")
    time_value = attrs.get("time")
    return Envelope(
        id=str(attrs["id"]),
        source=str(attrs["source"]),
        type=str(attrs["type"]),
        specversion=SPEC_VERSION,
        subject=str(attrs["subject"]) if attrs.get("subject") is not None else None,
        time=_parse_time(str(time_value)) if time_value else datetime.now(UTC),
        datacontenttype=str(attrs.get("datacontenttype") or JSON),
        data=data,
        extensions=extensions,
    )


def from_kafka(value: bytes | None, headers: Iterable[tuple[str, bytes | None]]) -> Envelope:
    """Decode a Kafka record in binary or structured content mode.

    Raises :class:`EnvelopeError` with a reason a person can act on.
    """
    header = _header_dict(headers)
    content_type = header.get("content-type", "").split(";")[0].strip().lower()
    if content_type == CLOUDEVENTS_JSON or (
        not header.get("ce_id") and content_type in ("", JSON) and value is not None and b'"specversion"' in value
    ):
        event = _load_json_object(value, "structured CloudEvent")
        data = event.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise EnvelopeError("structured CloudEvent `data` must be a JSON object")
        extensions = {k: str(v) for k, v in event.items() if k not in _KNOWN and k != "data"}
        if "traceparent" in header:
            extensions.setdefault("traceparent", header["traceparent"])
        return _build(event, data, extensions)
    if content_type and content_type != JSON:
        raise EnvelopeError(
            f"unsupported content-type {content_type!r}; send application/json (binary mode) "
            f"or {CLOUDEVENTS_JSON} (structured mode)"
        )
    attrs = {name[3:]: val for name, val in header.items() if name.startswith("ce_")}
    if not attrs:
        raise EnvelopeError("no CloudEvents headers (ce_id, ce_source, ce_type, ce_specversion)")
    extensions = {k: v for k, v in attrs.items() if k not in _KNOWN}
    if "traceparent" in header:
        extensions["traceparent"] = header["traceparent"]
    return _build(attrs, _load_json_object(value, "event data"), extensions)
