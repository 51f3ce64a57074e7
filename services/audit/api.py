"""Audit's HTTP routes, for the committee and admins only: a proposal's history, search, export,
and verification of the chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from services.audit import export, service, store
from services.audit.domain import rfc3339
from services.audit.responses import AuditPage, ProposalHistory
from services.audit.unit_of_work import SqlLog
from shared.auth import Principal, roles
from shared.events import INBOUND_TOPICS, Role, system_of_topic
from shared.http import MAX_OFFSET, Problem
from shared.responses import documented
from shared.runtime import ServiceRuntime


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "seq": row["seq"],
        "event_id": row["event_id"],
        "source": row["source"],
        "type": row["type"],
        "subject": row["subject"],
        "time": rfc3339(row["time"]),
        "actor": _actor(row),
        "correlation_id": row["correlation_id"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "payload": row["payload"],
        "recorded_at": rfc3339(row["recorded_at"]),
        "prev_hash": row["prev_hash"],
        "subject_seq": row["subject_seq"],
        "subject_prev_hash": row["subject_prev_hash"],
        "hash": row["hash"],
    }


def _actor(row: dict[str, Any]) -> dict[str, Any]:
    """Who acted; with `via`, the outside system's topic it came through, when it came through one."""
    actor = {"id": row["actor_id"], "role": row["actor_role"], "unit": row["actor_unit"]}
    via = _via(row)
    return {**actor, "via": via} if via else actor


def _via(row: dict[str, Any]) -> str | None:
    """Which outside system's topic it came through: for a command, the inbound topic it was read from (the
    brokers let only that system write it); for an event, the `actor.via` ProposalFlow stamped on it from the
    command that caused it (both covered by the entry's hash: the topic, and the payload)."""
    topic = row["topic"]
    if any(topic == inbound or system_of_topic(inbound, topic) for inbound in INBOUND_TOPICS):
        return str(topic)
    actor = row["payload"].get("actor") if isinstance(row["payload"], dict) else None
    via = actor.get("via") if isinstance(actor, dict) else None
    return str(via) if via else None


LogReader = Annotated[Principal, Depends(roles(Role.COMMITTEE, Role.ADMIN))]
"""The audit log is for the proposal committee (提案委员会) and administrators: every route takes its
caller as a LogReader, so the role is checked before the query is validated (shared.auth.roles)."""


def _selection(
    actor: str | None,
    unit: str | None,
    type_: str | None,
    subject: str | None,
    topic: str | None,
    since: datetime | None,
    until: datetime | None,
) -> store.EntryFilter:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Invalid request", f"`{name}` needs a timezone, e.g. 2026-01-01T00:00:00+08:00.")
    if since is not None and until is not None and since >= until:
        raise Problem(422, "Invalid request", "`from` must be before `to`.")
    return store.EntryFilter(actor=actor, unit=unit, type=type_, subject=subject, topic=topic, since=since, until=until)


Actor = Annotated[str | None, Query(description="Actor id (principal)")]
Unit = Annotated[str | None, Query(description="The acting unit (承办单位)")]
Type = Annotated[str | None, Query(alias="type", description="CloudEvents type, or `invalid-record`")]
Subject = Annotated[str | None, Query(description="Proposal id")]
Topic = Annotated[str | None, Query(description="Kafka topic")]
Since = Annotated[datetime | None, Query(alias="from", description="Event time from (inclusive, RFC 3339)")]
Until = Annotated[datetime | None, Query(alias="to", description="Event time to (exclusive, RFC 3339)")]


def router(runtime: ServiceRuntime, key: bytes | None) -> APIRouter:
    routes = APIRouter(prefix="/audit", tags=["audit"])

    @routes.get(
        "/proposals/{proposal_id}",
        summary="The ordered history of one proposal, with actors",
        **documented(ProposalHistory, "The proposal's audit entries, in order."),
    )
    async def proposal_history(proposal_id: str, principal: LogReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            rows = await store.history(conn, proposal_id)
        return {"proposal_id": proposal_id, "entries": [_view(row) for row in rows]}

    @routes.get(
        "/entries",
        summary="Search the log by actor, unit, type, proposal, topic and time",
        **documented(AuditPage, "One page of matching entries."),
    )
    async def search(
        principal: LogReader,
        actor: Actor = None,
        unit: Unit = None,
        type_: Type = None,
        subject: Subject = None,
        topic: Topic = None,
        since: Since = None,
        until: Until = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="`next_cursor` of the previous page")] = 0,
    ) -> dict[str, Any]:
        selection = _selection(actor, unit, type_, subject, topic, since, until)
        async with runtime.engine.connect() as conn:
            rows = await store.search(conn, selection, after_seq=cursor, limit=limit)
        next_cursor = rows[-1]["seq"] if len(rows) == limit else None
        return {"items": [_view(row) for row in rows], "limit": limit, "next_cursor": next_cursor}

    @routes.get(
        "/export",
        summary="Export matching entries as JSON Lines or CSV, streamed",
        response_class=StreamingResponse,
    )
    async def export_entries(
        principal: LogReader,
        format_: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl",
        actor: Actor = None,
        unit: Unit = None,
        type_: Type = None,
        subject: Subject = None,
        topic: Topic = None,
        since: Since = None,
        until: Until = None,
    ) -> StreamingResponse:
        selection = _selection(actor, unit, type_, subject, topic, since, until)

        async def lines() -> AsyncIterator[str]:
            if format_ == "csv":
                yield export.csv_header()
            async for entry in SqlLog(runtime.engine).entries(selection):
                yield export.csv_line(entry) if format_ == "csv" else export.jsonl_line(entry)

        media_type = "text/csv; charset=utf-8" if format_ == "csv" else "application/x-ndjson; charset=utf-8"
        return StreamingResponse(
            lines(),
            media_type=media_type,
            headers={"content-disposition": f'attachment; filename="audit.{format_}"'},
        )

    @routes.get("/verify", summary="Walk the hash chain: the first broken entry and why, or that all N hold")
    async def verify(principal: LogReader) -> dict[str, Any]:
        return await service.verify(SqlLog(runtime.engine), key)

    return routes
