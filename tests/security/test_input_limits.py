"""Oversized requests and deep JSON are refused early, without the server holding the payload.

Over HTTP: a declared 50 MB body is refused unread; a streamed one without Content-Length is refused
once it passes the 1 MB limit; a 100 000-deep JSON array is refused before `json.loads` recurses into
it. Memory is measured with tracemalloc while each request runs. On Kafka: an event whose data nests
too deep is dead-lettered with the reason, not parsed.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.intake import store
from shared.db import create_engine
from shared.envelope import EnvelopeError, from_kafka
from shared.events import Role
from shared.http import MAX_BODY_BYTES, MAX_JSON_DEPTH
from shared.jsonguard import MAX_EVENT_JSON_DEPTH, json_depth_exceeds
from shared.processor import EventProcessor
from tests.fakes import FakeRecord, RecordingPublisher
from tests.security.conftest import ServiceFactory, bearer, is_problem, token_for

pytestmark = pytest.mark.security

MB = 1024 * 1024
CHUNK = b"x" * (64 * 1024)  # one buffer, sent again and again: the client holds 64 KB, not the payload
MEMBER = bearer(token_for(Role.MEMBER))


class Payload:
    """A 50 MB body streamed in 64 KB chunks, counting how much of it the server asked for."""

    def __init__(self, size: int = 50 * MB) -> None:
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            self.pulled += len(CHUNK)
            yield CHUNK


async def peak_memory_of(action: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, int]:
    """The response and the peak of memory allocated while it was produced, in bytes."""
    tracemalloc.start()
    try:
        response = await action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


async def test_a_declared_50_mb_body_is_refused_unread(service_app: ServiceFactory) -> None:
    payload = Payload()
    async with service_app("intake") as svc:
        response, peak = await peak_memory_of(
            lambda: svc.http.post(
                "/proposals",
                content=payload,
                headers={**MEMBER, "content-type": "application/json", "content-length": str(payload.size)},
            )
        )
    assert response.status_code == 413 and is_problem(response)
    assert response.json()["detail"] == f"The body is {payload.size} bytes; the limit is {MAX_BODY_BYTES}."
    assert payload.pulled == 0
    assert peak < 5 * MB


async def test_a_streamed_50_mb_body_without_length_is_cut_off_at_the_limit(service_app: ServiceFactory) -> None:
    payload = Payload()
    async with service_app("intake") as svc:
        response, peak = await peak_memory_of(
            lambda: svc.http.post("/proposals", content=payload, headers={**MEMBER, "content-type": "application/json"})
        )
        after = await svc.http.get("/proposals", headers=MEMBER)
    assert response.status_code == 413 and is_problem(response)
    assert "limit of 1000000 bytes" in response.json()["detail"]
    assert payload.pulled <= MAX_BODY_BYTES + len(CHUNK), "the server read past the limit"
    assert peak < 5 * MB, f"{peak} bytes allocated for a refused body"
    assert after.status_code == 200 and after.json()["items"] == []


@pytest.mark.parametrize("opening", ["[", '{"a":'])
async def test_json_100000_deep_is_refused_before_it_is_parsed(service_app: ServiceFactory, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = (opening * 100_000 + "1" + closing * 100_000).encode()
    async with service_app("intake") as svc:
        response, peak = await peak_memory_of(
            lambda: svc.http.post("/proposals", content=body, headers={**MEMBER, "content-type": "application/json"})
        )
    assert response.status_code == 400 and is_problem(response)
    assert response.json()["title"] == "JSON nested too deep"
    assert f"more than {MAX_JSON_DEPTH} levels" in response.json()["detail"]
    assert peak < 5 * MB + 3 * len(body)


async def test_brackets_inside_strings_are_text_not_nesting(service_app: ServiceFactory) -> None:
    title = "关于" + "[{" * 2000 + '\\"' + "]}" * 2000
    body = ('{"title": "' + title + '", "body": "x", "category": "经济建设", "suggestions": []}').encode()
    async with service_app("intake") as svc:
        response = await svc.http.post(
            "/proposals", content=body, headers={**MEMBER, "content-type": "application/json"}
        )
    assert response.status_code == 422, response.text  # refused by the schema, not by the depth guard
    assert response.json()["title"] == "Invalid request"


async def test_a_body_at_the_depth_limit_is_accepted_by_the_guard(service_app: ServiceFactory) -> None:
    nested: Any = "建议"
    for _ in range(MAX_JSON_DEPTH - 2):
        nested = [nested]
    async with service_app("intake") as svc:
        response = await svc.http.post("/proposals/drafts", json={"suggestions": nested}, headers=MEMBER)
    assert response.status_code == 422, response.text
    assert response.json()["title"] == "Invalid request"


def test_depth_is_measured_as_a_json_parser_reads_it() -> None:
    assert not json_depth_exceeds(b'{"a": [[1, 2], {"b": "]]]]"}]}', 3)
    assert json_depth_exceeds(b'{"a": [[1, 2], {"b": [[]]}]}', 3)
    assert not json_depth_exceeds(b'["\\\\", "[[[[[", "\\"[[[["]', 1)
    assert json_depth_exceeds(b'["\\\\"' + b"[" * 10, 5)  # an escaped backslash does not open a string


def test_an_inbound_event_nested_too_deep_is_refused_by_the_envelope() -> None:
    deep = b'{"actor": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = [("ce_id", b"c-1"), ("ce_source", b"/portal"), ("ce_type", b"t"), ("ce_specversion", b"1.0")]
    with pytest.raises(EnvelopeError, match=f"more than {MAX_EVENT_JSON_DEPTH} levels deep"):
        from_kafka(deep, headers)


async def test_an_inbound_event_nested_too_deep_goes_to_the_dead_letter_topic(sqlite_url: str) -> None:
    producer = RecordingPublisher()
    engine = create_engine(sqlite_url)  # never reached: the record fails before any database work
    processor = EventProcessor(
        service="intake",
        consumer="intake",
        engine=engine,
        metadata=store.metadata,
        handler=_never_called,
        producer=producer,  # type: ignore[arg-type]
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    headers = [
        ("ce_id", b"c-1"),
        ("ce_source", b"/portal/members"),
        ("ce_type", b"proposalflow.submission.requested.v1"),
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/json"),
    ]
    outcome = await processor.process(FakeRecord("proposalflow.submissions", 0, 7, None, deep, headers))
    await engine.dispose()
    assert outcome == "dead-lettered"
    [letter] = producer.sent
    assert letter.topic == "proposalflow.dlq.intake"
    error = dict(letter.headers)["x-dlq-error"].decode()
    assert error == f"EnvelopeError: event data nests arrays or objects more than {MAX_EVENT_JSON_DEPTH} levels deep"


async def _never_called(*_args: Any) -> None:
    raise AssertionError("the handler must not see a record that failed decoding")
