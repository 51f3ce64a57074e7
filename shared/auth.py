"""Bearer JWT authentication and role checks.

Development: HS256 with a shared secret (`PROPOSALFLOW_JWT_SECRET`; `proposalflow token` issues one).
Production: RS256 keys from an OIDC provider's JWKS (`PROPOSALFLOW_JWT_JWKS_URL`).
Claims: `sub` (principal id), `role` (a :class:`~shared.events.Role`), `unit` (for unit users),
`name` (display name, optional).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from shared.events import Actor, Role, system_of_topic, system_topic
from shared.http import Problem
from shared.settings import CommonSettings, parse_source_grants, parse_source_systems


class Principal(BaseModel):
    """Who is calling: from a verified token."""

    id: str
    role: Role
    unit: str | None = None
    name: str | None = None

    def as_actor(self) -> Actor:
        return Actor(id=self.id, role=self.role, unit=self.unit)


def issue_token(
    settings: CommonSettings,
    *,
    subject: str,
    role: Role,
    unit: str | None = None,
    name: str | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> str:
    """A development token signed with the HS256 secret."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "role": role.value, "iat": now, "exp": now + ttl}
    if unit:
        claims["unit"] = unit
    if name:
        claims["name"] = name
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def decode_token(settings: CommonSettings, token: str) -> Principal:
    """Verify a token and return its principal; raises :class:`Problem` (401) saying why not."""
    options = {"require": ["exp", "sub", "role"]}
    try:
        if settings.jwt_algorithm == "RS256":
            if not settings.jwt_jwks_url:
                raise Problem(500, "Authentication misconfigured", "RS256 needs PROPOSALFLOW_JWT_JWKS_URL")
            key: Any = _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key
        else:
            key = settings.jwt_secret
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.ExpiredSignatureError as exc:
        raise Problem(401, "Token expired", "The bearer token has expired; get a new one.") from exc
    except jwt.PyJWTError as exc:
        raise Problem(401, "Invalid token", f"The bearer token was refused: {exc}.") from exc
    try:
        return Principal(id=claims["sub"], role=claims["role"], unit=claims.get("unit"), name=claims.get("name"))
    except ValidationError as exc:
        raise Problem(401, "Invalid token", f"The token's claims are not usable: {exc.errors()[0]['msg']}") from exc


_bearer = HTTPBearer(auto_error=False)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The FastAPI dependency that authenticates the caller, with the app's `common_settings`."""
    settings: CommonSettings = request.app.state.common_settings
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "Not authenticated", "Send `Authorization: Bearer <token>`.")
    if settings.jwt_algorithm == "RS256":
        principal = await asyncio.to_thread(decode_token, settings, credentials.credentials)
    else:
        principal = decode_token(settings, credentials.credentials)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authenticate)]
"""A route parameter of this type is the authenticated caller."""


def require_role(principal: Principal, *roles: Role) -> None:
    """Refuse (403) a caller whose role may not do this, naming the roles that may; and a unit user
    whose token names no unit, since everything a unit may do or see is its own unit's."""
    if principal.role not in roles:
        allowed = ", ".join(role.value for role in roles)
        raise Problem(403, "Forbidden", f"This action is for {allowed}; your role is {principal.role.value}.")
    if principal.role == Role.UNIT and not principal.unit:
        raise Problem(403, "Forbidden", "Your token names no unit; ask an admin for a unit token.")


def roles(*allowed: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """The dependency that admits callers of these roles only, for a route's or a router's
    `dependencies=[Depends(roles(...))]` (or `Annotated[Principal, Depends(roles(...))]`).

    FastAPI resolves a route's dependencies before it validates the route's own path, query, header and
    body parameters, and a dependency's exception ends the request there: so the order is authentication
    (401), this check (403), then validation (422), then the use case's rules. A check in the endpoint's
    body would come after validation, and tell a caller who may not use the route what it takes.
    """
    if not allowed:
        raise ValueError("roles() needs at least one role")

    async def admit(principal: Caller) -> Principal:
        require_role(principal, *allowed)
        return principal

    admit.__qualname__ = admit.__name__ = "roles_" + "_".join(role.value for role in allowed)
    return admit


class InboundAllowList:
    """Who may write the inbound command topics (`proposalflow.submissions`, `proposalflow.unit-reports`):
    outside systems, known by their CloudEvents `source`, from `PROPOSALFLOW_ALLOWED_SOURCES`.

    A command names its actor; an allowed source is trusted to vouch for its own users, but only within
    its grant: a source granted `unit:dg-fgj` cannot report for another unit, a member portal cannot
    speak for the committee. A `system` actor is the source itself, so its id must be the source.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self._grants = parse_source_grants(list(entries))
        self._systems = parse_source_systems(list(entries))

    def admits(self, source: str) -> bool:
        return source in self._grants

    def forged_actor(self, source: str, actor: Actor) -> str | None:
        """Why the command's actor is not one this source may act for, or None when it is."""
        if actor.role == Role.SYSTEM and actor.id != source:
            return f"a system actor is the sending system itself: actor id {actor.id!r} is not the source {source!r}"
        grants = self._grants.get(source)
        if grants is None:
            return None
        if any(role == actor.role.value and unit in (None, actor.unit) for role, unit in grants):
            return None
        allowed = ", ".join(sorted(f"{role}:{unit}" if unit else role for role, unit in grants))
        named = f"{actor.role.value}:{actor.unit}" if actor.unit else actor.role.value
        return f"source {source!r} may act for {allowed} only; the command names {named} {actor.id!r}"

    def wrong_topic(self, source: str, topic: str, inbound: str) -> str | None:
        """Why an allowed source may not arrive on `topic` (the shared inbound topic `inbound`, or one system's
        own `inbound.<system>`), or None when it may. The brokers let only a system's Kafka user write its
        own topic, so the topic proves which system sent a command; the source it claims must be that
        system's. A source bound to a system is accepted only on that system's topic."""
        system = system_of_topic(inbound, topic)
        bound = self._systems.get(source)
        if system is None:
            if topic != inbound or bound is None:
                return None
            return (
                f"source {source!r} belongs to system {bound!r}, which sends on {system_topic(inbound, bound)}, "
                f"not on the shared topic {inbound}"
            )
        if bound == system:
            return None
        if bound is None:
            return (
                f"topic {topic} carries the commands of system {system!r}, and source {source!r} is not one of "
                f"its sources: ask the proposal office to bind it in PROPOSALFLOW_ALLOWED_SOURCES ({system}@{source})"
            )
        return (
            f"topic {topic} belongs to system {system!r}, but source {source!r} is system {bound!r}'s: "
            "a system may send only under its own sources"
        )
