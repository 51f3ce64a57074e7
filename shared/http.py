"""HTTP plumbing shared by the services: RFC 9457 problem+json errors, health and metrics routes,
request size and nesting limits, and `Idempotency-Key` handling."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import built_once
from shared.jsonguard import json_depth_exceeds
from shared.observability import METRICS, bind_context, traced
from shared.outbox import EventTooLarge

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 1_000_000
MAX_JSON_DEPTH = 32
MAX_OFFSET = 2**31 - 1
"""The largest page offset or cursor a route accepts: what a 32-bit integer column or parameter holds on
every supported database (a larger one would fail in the driver, as a 500)."""


class Problem(Exception):
    """An error a person can act on, sent as `application/problem+json` (RFC 9457)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type_

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_JSON)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        errors.append({"field": ".".join(location) or "body", "message": error.get("msg", "invalid")})
    return errors


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: what was wrong and how to fix it.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}

_PROBLEM_DESCRIPTIONS = {
    "400": "Malformed JSON, or JSON nested too deep",
    "401": "No token, or a token that is expired, forged or unusable",
    "403": "Your role (or unit) may not do this",
    "404": "Nothing here that you may see",
    "409": "The proposal is not in a state that allows this",
    "413": "The body is over the size limit, or the event it would make is too large to publish",
    "415": "The body is not application/json",
    "422": "The request breaks the schema or a rule; `errors` lists each problem",
}


def _problems_for(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    """The problem statuses an operation can answer, from what it takes: a token, parameters, a body."""
    codes = []
    if operation.get("security"):
        codes += ["401", "403"]
    if "{" in path or method != "get":
        codes.append("404")
    if method != "get":
        codes.append("409")
    if "requestBody" in operation:
        codes += ["400", "415"]
    if "requestBody" in operation or method != "get":
        codes.append("413")  # a write may stage an event too large to publish (`too_large`)
    if operation.get("parameters") or "requestBody" in operation or method != "get":
        codes.append("422")
    return codes


def document_problems(app: FastAPI) -> None:
    """Declare in the app's OpenAPI document the problem+json answers its routes give besides success.

    FastAPI documents only a 422 in its own validation format; these routes answer every error as
    RFC 9457 problem+json, and the document must say so for clients (and the schema fuzzing) to rely on it.
    """
    generate = app.openapi
    done: list[int] = []  # the id of the document already completed (FastAPI regenerates when routes change)

    def openapi() -> dict[str, Any]:
        document = generate()
        if done and done[0] == id(document):
            return document
        document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for schemas in ("HTTPValidationError", "ValidationError"):
            document["components"]["schemas"].pop(schemas, None)
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for code in _problems_for(method, path, operation):
                    responses[code] = {"description": _PROBLEM_DESCRIPTIONS[code], "content": problem}
        done[:] = [id(document)]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


UTF8_BYTES_PER_HAN = 3
"""What a Chinese character (汉字) takes in UTF-8, the encoding of every event."""


def too_large(exc: EventTooLarge) -> Problem:
    """413 for a request whose event would be over the producer's limit: nothing was stored (the
    transaction rolled back), and the request can succeed once shorter. The body limit counts the
    request's bytes; the event carries more (ids, the proposer, the envelope), and JSON may have sent
    Chinese as 6-byte `\\uXXXX` escapes where the event stores 3 bytes, so the detail says how much to cut
    in the measure a writer of Chinese uses."""
    over = exc.size - exc.limit
    characters = -(-over // UTF8_BYTES_PER_HAN)
    return Problem(
        413,
        "Content too large",
        f"This request would publish a {exc.event_type} event of {exc.size} bytes; events can be at most "
        f"{exc.limit} bytes. Nothing was saved. Shorten the text by at least {over} bytes (about {characters} "
        f"Chinese characters, {UTF8_BYTES_PER_HAN} bytes each in UTF-8) and send it again.",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(EventTooLarge)
    async def _too_large(request: Request, exc: EventTooLarge) -> Response:
        return too_large(exc).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = _field_errors(exc)
        if any(error["message"].startswith("JSON decode error") for error in errors):
            problem = Problem(400, "Malformed JSON", "The request body is not valid JSON.", errors=errors)
        else:
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            problem = Problem(422, "Invalid request", summary, errors=errors)
        return problem.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed", 415: "Unsupported media type"}
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return Problem(exc.status_code, titles.get(exc.status_code, "Error"), detail).response(request.url.path)


class BodyLimits:
    """Refuse a body that is too large or nests too deep, before the app reads or parses it.

    A declared `Content-Length` above the limit is refused by :func:`install_middleware` unread. This
    guard covers what that cannot see: a chunked or streamed body without a length, which is read
    chunk by chunk and refused (413) as soon as it passes the limit, so at most the limit is ever held
    in memory; and a body whose arrays and objects nest deeper than `max_json_depth` (400), found on
    the bytes before `json.loads` would recurse into it.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replaying([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                problem = Problem(
                    413, "Request too large", f"The body is over the limit of {self.max_body_bytes} bytes."
                )
                await problem.response(scope["path"])(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth_exceeds(body, self.max_json_depth):
            problem = Problem(
                400,
                "JSON nested too deep",
                f"The body nests arrays or objects more than {self.max_json_depth} levels deep.",
            )
            await problem.response(scope["path"])(scope, receive, send)
            return
        await self.app(scope, _replaying([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out the messages already read, then the connection's own."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class RequestGuard:
    """Every request: a correlation id (the caller's `X-Correlation-Id`, or a new one), an early refusal
    of a declared body over the limit (413) or not JSON (415), a server span continuing the caller's
    `traceparent`, the request metric, and `X-Correlation-Id` and `Server-Timing` on the response.

    Plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which runs every request through a task
    group and memory streams (docs/performance.md)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        correlation_id = headers.get("x-correlation-id") or str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        method, path = scope["method"], scope["path"]
        refusal = self._refusal(method, headers)
        if refusal is not None:
            await refusal.response(path)(scope, receive, self._sending(send, correlation_id, time.perf_counter()))
            return
        started = time.perf_counter()
        status = 500
        send_marked = self._sending(send, correlation_id, started)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send_marked(message)

        attributes = {"http.request.method": method, "url.path": path}
        with (
            traced(method, headers.get("traceparent"), kind=SpanKind.SERVER, attributes=attributes) as hop,
            bind_context(correlation_id=correlation_id, traceparent=hop),
        ):
            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                span = trace.get_current_span()
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                METRICS.http_requests.labels(method, route, str(status)).inc()

    def _refusal(self, method: str, headers: dict[str, str]) -> Problem | None:
        if method not in ("POST", "PUT", "PATCH"):
            return None
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return Problem(413, "Request too large", f"The body is {length} bytes; the limit is {self.max_body_bytes}.")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if length not in (None, "0") and content_type and content_type != "application/json":
            return Problem(415, "Unsupported media type", f"Send application/json, not {content_type}.")
        return None

    @staticmethod
    def _sending(send: Send, correlation_id: str, started: float) -> Send:
        """`send`, adding the correlation id and the time the app took to the response's headers."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-correlation-id", correlation_id.encode("latin-1")),
                    (b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return sending


def install_middleware(
    app: FastAPI, *, max_body_bytes: int = MAX_BODY_BYTES, max_json_depth: int = MAX_JSON_DEPTH
) -> None:
    """Correlation ids, request metrics, and an early refusal of oversized, too deep or non-JSON bodies."""
    # Added first, so it runs inside the guard below: its refusals carry correlation ids and are counted.
    app.add_middleware(BodyLimits, max_body_bytes=max_body_bytes, max_json_depth=max_json_depth)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)


def install_health_routes(app: FastAPI, readiness: Callable[[], Awaitable[dict[str, str]]]) -> None:
    """`/healthz` (alive), `/readyz` (database and broker reachable), `/metrics` (Prometheus)."""

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Database and broker are reachable",
        responses={503: {"description": "The database or the broker is unreachable; `checks` says which"}},
    )
    async def readyz() -> Response:
        checks = await readiness()
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# Idempotency-Key ----------------------------------------------------------------------------------


def request_fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def replay_idempotent(
    conn: AsyncConnection, metadata: MetaData, principal: str, key: str | None, fingerprint: str
) -> JSONResponse | None:
    """The stored response of an earlier request with the same key, if any.

    A key reused for a different request is refused (422): the client made a mistake.
    """
    if not key:
        return None
    table = metadata.tables["idempotency_keys"]
    query = built_once(
        ("idempotency-replay", table),
        lambda: select(table).where(table.c.principal == bindparam("principal")).where(table.c.key == bindparam("key")),
    )
    row = (await conn.execute(query, {"principal": principal, "key": key})).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise Problem(
            422,
            "Idempotency-Key reused",
            f"Idempotency-Key {key!r} was already used for a different request; use a new key.",
        )
    return JSONResponse(json.loads(row.response), status_code=row.status_code, headers={"idempotent-replayed": "true"})


async def remember_idempotent(
    conn: AsyncConnection,
    metadata: MetaData,
    principal: str,
    key: str | None,
    fingerprint: str,
    status_code: int,
    body: Any,
) -> None:
    """Store the response in the same transaction as the effect it reports."""
    if not key:
        return
    table = metadata.tables["idempotency_keys"]
    values = {
        "principal": principal,
        "key": key,
        "request_hash": fingerprint,
        "status_code": status_code,
        "response": json.dumps(body, ensure_ascii=False, default=str).encode(),
        "created_at": datetime.now(UTC),
    }
    dialect = conn.dialect.name
    stmt = built_once(
        ("idempotency-remember", table, dialect),
        lambda: (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing(),
    )
    await conn.execute(stmt, values)
