"""The CloudEvents envelope: what an integrator sends and receives on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.envelope import CLOUDEVENTS_JSON, Envelope, EnvelopeError, from_kafka, to_kafka


def test_binary_mode_round_trip_keeps_every_attribute_and_chinese_text() -> None:
    original = Envelope(
        type="proposalflow.proposal.filed.v1",
        source="/proposalflow/intake",
        subject="p-1",
        data={"title": "关于推进全域土地综合整治的建议", "n": 3},
        time=datetime(2026, 3, 5, 9, 30, tzinfo=UTC),
        extensions={"correlationid": "req-7", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    key, value, headers = to_kafka(original)
    names = dict(headers)
    assert key == b"p-1"
    assert names["ce_type"] == b"proposalflow.proposal.filed.v1"
    assert names["content-type"] == b"application/json"
    assert names["ce_correlationid"] == b"req-7"
    assert "关于".encode() in value  # readable UTF-8, not \\u escapes
    assert from_kafka(value, headers) == original


def test_structured_mode_is_accepted_on_input() -> None:
    event = {
        "specversion": "1.0",
        "id": "cmd-1",
        "source": "/portal/members",
        "type": "proposalflow.submission.requested.v1",
        "subject": "p-9",
        "time": "2026-03-05T09:30:00Z",
        "datacontenttype": "application/json",
        "correlationid": "abc",
        "data": {"title": "x"},
    }
    envelope = from_kafka(json.dumps(event).encode(), [("content-type", CLOUDEVENTS_JSON.encode())])
    assert envelope.id == "cmd-1"
    assert envelope.source == "/portal/members"
    assert envelope.subject == "p-9"
    assert envelope.data == {"title": "x"}
    assert envelope.correlation_id == "abc"
    assert envelope.time == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (
            b"{}",
            [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_specversion", b"1.0")],
            r"missing required CloudEvents attribute\(s\): type",
        ),
        (
            b"not json",
            [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_specversion", b"1.0")],
            "not valid JSON",
        ),
        (
            b"[1]",
            [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_specversion", b"1.0")],
            "must be a JSON object",
        ),
        (b"{}", [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_specversion", b"0.3")], "specversion"),
        (b"{}", [("content-type", b"text/xml"), ("ce_id", b"1")], "unsupported content-type"),
        (b"{}", [], "no CloudEvents headers"),
        (
            b"{}",
            [
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_type", b"t"),
                ("ce_specversion", b"1.0"),
                ("ce_time", b"yesterday"),
            ],
            "RFC 3339",
        ),
    ],
)
def test_invalid_records_are_refused_with_a_reason(
    value: bytes, headers: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(EnvelopeError, match=message):
        from_kafka(value, headers)
