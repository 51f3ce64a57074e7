"""Notify's HTTP routes: the caller's in-app inbox (站内消息) and own preferences (个人偏好), the
contacts directory (通讯录, admins) and the delivery log (admins). PUT, DELETE and mark-read are
idempotent by nature, so they take no Idempotency-Key."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from services.notify import domain, store
from services.notify.responses import InboxPage
from shared.auth import Principal, roles
from shared.events import Role
from shared.http import MAX_OFFSET, Problem
from shared.responses import documented
from shared.runtime import ServiceRuntime

Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
SIGNED_IN = tuple(role for role in Role if role not in (Role.PUBLIC, Role.SYSTEM))


def recipient_of(principal: Principal) -> str:
    """A unit user reads its unit's inbox, the committee and the dispatcher their office's; everyone
    else their own."""
    if principal.role == Role.UNIT:
        if not principal.unit:
            raise Problem(403, "Forbidden", "Your token names no unit; ask an admin for a unit token.")
        return domain.unit_recipient(principal.unit)
    if principal.role == Role.COMMITTEE:
        return domain.COMMITTEE
    if principal.role == Role.DISPATCHER:
        return domain.DISPATCHER
    return principal.id


async def _recipient(principal: Annotated[Principal, Depends(roles(*SIGNED_IN))]) -> str:
    return recipient_of(principal)


# Who may call what (tests/security/authz_matrix.yaml). A route takes its caller as one of these, so the
# role (and a unit token's unit) is checked before the request's parameters and body are validated
# (shared.auth.roles).
Recipient = Annotated[str, Depends(_recipient)]
"""The signed-in caller, as the recipient whose inbox and preferences it reads (see `recipient_of`)."""
AdminCaller = Annotated[Principal, Depends(roles(Role.ADMIN))]


def _notification_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "proposal_id": row["proposal_id"],
        "cause_event_type": row["cause_event_type"],
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
    }


def inbox_router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/inbox", tags=["inbox"])

    @routes.get(
        "",
        summary="My notifications, newest first, with the unread count",
        **documented(InboxPage, "One page of the caller's inbox."),
    )
    async def list_inbox(recipient: Recipient, unread: bool = False, limit: Limit = 50, offset: Offset = 0) -> Any:
        async with runtime.engine.connect() as conn:
            rows, unread_count = await store.inbox(conn, recipient, unread_only=unread, limit=limit, offset=offset)
        return {
            "items": [_notification_view(row) for row in rows],
            "unread": unread_count,
            "limit": limit,
            "offset": offset,
        }

    @routes.post("/{notification_id}/read", summary="Mark one notification read", status_code=204)
    async def mark_read(notification_id: str, recipient: Recipient) -> Response:
        async with runtime.transaction() as conn:
            found = await store.mark_read(conn, recipient, notification_id, datetime.now(UTC))
        if found is None:
            raise Problem(404, "Not found", f"No notification {notification_id} in your inbox.")
        return Response(status_code=204)

    return routes


class QuietHours(BaseModel):
    """短信免打扰时段, local time (Asia/Shanghai); may wrap midnight, e.g. 22:00–07:00."""

    model_config = ConfigDict(extra="forbid")

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours must start and end at different times")
        return self


ContactKind = Literal["member", "unit", "leader", "group"]


class ContactIn(BaseModel):
    """One entry of the contacts directory: how to reach a recipient and what they want."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: ContactKind = Field(description="member 委员 / unit 承办单位 / leader 领导 / group committee or dispatcher")
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{5,20}$")
    webhook_url: HttpUrl | None = Field(default=None, description="The recipient's own or its system's endpoint.")
    channels: list[Literal["webhook", "email", "sms"]] | None = Field(
        default=None, description="Outside channels wanted; null = every channel with an address. Inbox is always on."
    )
    quiet_hours: QuietHours | None = None


def contact_id_rule(contact_id: str, kind: str) -> str | None:
    """Recipient ids are what rules produce: `unit:<id>` for a unit, `committee`/`dispatcher` for a group."""
    if kind == "unit" and not contact_id.startswith("unit:"):
        return f"a unit's contact id is unit:<unit id>, not {contact_id!r}"
    if kind == "group" and contact_id not in (domain.COMMITTEE, domain.DISPATCHER):
        return f"a group contact is {domain.COMMITTEE!r} or {domain.DISPATCHER!r}, not {contact_id!r}"
    if kind in ("member", "leader") and (contact_id.startswith("unit:") or contact_id in ("committee", "dispatcher")):
        return f"{contact_id!r} names a unit or a group, not a {kind}"
    return None


def _contact_view(row: dict[str, Any]) -> dict[str, Any]:
    quiet = {"start": row["quiet_start"], "end": row["quiet_end"]} if row["quiet_start"] else None
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "email": row["email"],
        "phone": row["phone"],
        "webhook_url": row["webhook_url"],
        "channels": row["channels"],
        "quiet_hours": quiet,
        "updated_at": row["updated_at"].isoformat(),
    }


def contacts_router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/contacts", tags=["contacts"])

    @routes.get("", summary="The contacts directory (通讯录), by id")
    async def list_contacts(
        principal: AdminCaller, kind: ContactKind | None = None, limit: Limit = 50, offset: Offset = 0
    ) -> Any:
        async with runtime.engine.connect() as conn:
            rows, total = await store.list_contacts(conn, kind=kind, limit=limit, offset=offset)
        return {"items": [_contact_view(row) for row in rows], "total": total, "limit": limit, "offset": offset}

    @routes.get("/{contact_id}", summary="One contact")
    async def get_contact(contact_id: str, principal: AdminCaller) -> Any:
        async with runtime.engine.connect() as conn:
            row = await store.get_contact(conn, contact_id)
        if row is None:
            raise Problem(404, "Not found", f"No contact {contact_id}.")
        return _contact_view(row)

    @routes.put(
        "/{contact_id}",
        summary="Create or replace a contact",
        responses={201: {"description": "The contact was created (200: replaced)"}},
    )
    async def put_contact(contact_id: str, contact: ContactIn, principal: AdminCaller, response: Response) -> Any:
        problem = contact_id_rule(contact_id, contact.kind)
        if problem:
            raise Problem(422, "Invalid contact id", problem, errors=[{"field": "id", "message": problem}])
        values = {
            "id": contact_id,
            "name": contact.name,
            "kind": contact.kind,
            "email": contact.email,
            "phone": contact.phone,
            "webhook_url": str(contact.webhook_url) if contact.webhook_url else None,
            "channels": contact.channels,
            "quiet_start": contact.quiet_hours.start.strftime("%H:%M") if contact.quiet_hours else None,
            "quiet_end": contact.quiet_hours.end.strftime("%H:%M") if contact.quiet_hours else None,
            "updated_at": datetime.now(UTC),
        }
        async with runtime.transaction() as conn:
            created = await store.put_contact(conn, values)
        response.status_code = 201 if created else 200
        return _contact_view(values)

    @routes.delete("/{contact_id}", summary="Remove a contact", status_code=204)
    async def delete_contact(contact_id: str, principal: AdminCaller) -> Response:
        async with runtime.transaction() as conn:
            if not await store.delete_contact(conn, contact_id):
                raise Problem(404, "Not found", f"No contact {contact_id}.")
        return Response(status_code=204)

    return routes


class PreferencesIn(BaseModel):
    """个人偏好: what a recipient chooses for themself; addresses stay with the directory's admins."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Literal["webhook", "email", "sms"]] | None = Field(
        default=None, description="Outside channels wanted; null = every channel with an address. Inbox is always on."
    )
    quiet_hours: QuietHours | None = Field(default=None, description="短信免打扰; null = SMS at any hour.")


def _preferences_view(row: dict[str, Any]) -> dict[str, Any]:
    view = _contact_view(row)
    return {key: view[key] for key in ("id", "name", "channels", "quiet_hours", "updated_at")} | {
        "addresses": {channel: view[field] is not None for channel, field in ADDRESS_FIELDS.items()}
    }


NO_ENTRY: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "The caller has no contacts-directory entry yet",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}
ADDRESS_FIELDS = {"email": "email", "sms": "phone", "webhook": "webhook_url"}


def preferences_router(runtime: ServiceRuntime) -> APIRouter:
    """The caller's own preferences: the entry of the directory their inbox belongs to (a unit user
    sets their unit's). Addresses are not shown, only whether each channel has one."""
    routes = APIRouter(prefix="/preferences", tags=["preferences"])

    def no_entry(recipient: str) -> Problem:
        return Problem(
            404,
            "No contact entry",
            f"There is no contacts-directory entry for {recipient} yet; ask an admin to add your contact details "
            "first. Until then you are told in the in-app inbox only.",
        )

    @routes.get("", summary="My notification preferences (channels, SMS quiet hours)", responses=NO_ENTRY)
    async def get_preferences(recipient: Recipient) -> Any:
        async with runtime.engine.connect() as conn:
            row = await store.get_contact(conn, recipient)
        if row is None:
            raise no_entry(recipient)
        return _preferences_view(row)

    @routes.put("", summary="Set my notification preferences", responses=NO_ENTRY)
    async def put_preferences(preferences: PreferencesIn, recipient: Recipient) -> Any:
        quiet = preferences.quiet_hours
        values = {
            "channels": preferences.channels,
            "quiet_start": quiet.start.strftime("%H:%M") if quiet else None,
            "quiet_end": quiet.end.strftime("%H:%M") if quiet else None,
            "updated_at": datetime.now(UTC),
        }
        async with runtime.transaction() as conn:
            row = await store.set_preferences(conn, recipient, values)
        if row is None:
            raise no_entry(recipient)
        return _preferences_view(row)

    return routes


def _delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "recipient": row["recipient"],
        "channel": row["channel"],
        "proposal_id": row["proposal_id"],
        "cause_event_type": row["cause_event_type"],
        "title": row["title"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"].isoformat() if row["status"] == store.PENDING else None,
        "last_error": row["last_error"],
        "created_at": row["created_at"].isoformat(),
    }


def deliveries_router(runtime: ServiceRuntime) -> APIRouter:
    routes = APIRouter(prefix="/deliveries", tags=["deliveries"])

    @routes.get("", summary="Outside-channel deliveries, newest first (addresses left out)")
    async def list_deliveries(
        principal: AdminCaller,
        status: Literal["pending", "delivered", "failed"] | None = None,
        proposal_id: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Any:
        async with runtime.engine.connect() as conn:
            rows, total = await store.list_deliveries(
                conn, status=status, proposal_id=proposal_id, limit=limit, offset=offset
            )
        return {"items": [_delivery_view(row) for row in rows], "total": total, "limit": limit, "offset": offset}

    return routes
