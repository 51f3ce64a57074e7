"""Every HTTP route of every service × every role and every kind of bad token gets exactly the answer
the authorisation matrix (authz_matrix.yaml) says: allowed roles get past the checks, other roles 403,
no or an invalid token 401, refusals as problem+json; and in that order: the token, then the role, then
the request's validity, so that a refused caller never sees what a route takes.

The routes are enumerated from the running apps, so a new route without a matrix entry fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from shared.auth import issue_token
from shared.events import Role
from shared.settings import SERVICES, CommonSettings
from tests.security.conftest import ServiceFactory, bearer, is_problem, token_for

pytestmark = pytest.mark.security

MATRIX: dict[str, dict[str, dict[str, Any]]] = {
    service: routes
    for service, routes in yaml.safe_load((Path(__file__).parent / "authz_matrix.yaml").read_text("utf-8")).items()
    if not service.startswith("x-")
}


def _claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": "member-1", "role": "member", "iat": now, "exp": now + timedelta(hours=1), **changes}


def invalid_credentials() -> dict[str, dict[str, str]]:
    """Requests that must be refused 401 on every protected route, whatever the route."""
    secret = CommonSettings().jwt_secret
    return {
        "no token": {},
        "expired token": bearer(token_for(Role.ADMIN, ttl=timedelta(seconds=-60))),
        "wrong signature": bearer(jwt.encode(_claims(role="admin"), "another-secret-" * 4, algorithm="HS256")),
        "unsigned (alg none)": bearer(jwt.encode(_claims(role="admin"), None, algorithm="none")),
        "unknown role": bearer(jwt.encode(_claims(role="superuser"), secret, algorithm="HS256")),
        "no expiry": bearer(jwt.encode({"sub": "admin-1", "role": "admin"}, secret, algorithm="HS256")),
        "not a JWT": bearer("not-a-jwt"),
        "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }


def routes_of(app: FastAPI) -> set[str]:
    """`METHOD /path` of every route the app serves (HEAD is GET's shadow)."""
    found = set()
    for context in iter_route_contexts(app.routes):
        for method in getattr(context.original_route, "methods", None) or ():
            if method != "HEAD":
                found.add(f"{method} {context.path}")
    return found


def concrete(path: str) -> str:
    """Fill path parameters with ids that exist nowhere: the role check comes before any lookup."""
    for name in ("proposal_id", "reply_id", "measure_id", "notification_id", "contact_id", "leader_id", "unit_id"):
        path = path.replace("{" + name + "}", f"no-such-{name.removesuffix('_id')}")
    return path


async def call(http: httpx.AsyncClient, route: str, entry: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    method, path = route.split(" ", 1)
    body = entry.get("body")
    return await http.request(method, concrete(path), json=body, headers=headers)


def verdict(route: str, caller: str, response: httpx.Response, expected: str, entry: dict[str, Any]) -> str | None:
    """What is wrong with the answer, or None when it is the matrix's."""
    status = response.status_code
    seen = f"{route} as {caller}: got {status} {response.text[:160]!r}"
    if expected in ("401", "403"):
        if status != int(expected):
            return f"{seen}; expected {expected}"
        if not is_problem(response):
            return f"{seen}; expected a problem+json body"
        return None
    if status in (401, 403):
        return f"{seen}; expected to be let in"
    if "expect" in entry:
        return None if status in entry["expect"] else f"{seen}; expected one of {entry['expect']}"
    if status >= 500:
        return f"{seen}; a server error"
    if status >= 400 and not is_problem(response):
        return f"{seen}; a refusal must be problem+json"
    return None


def test_the_matrix_names_every_service() -> None:
    assert sorted(MATRIX) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_answers_every_role_and_bad_token_as_the_matrix_says(
    service: str, service_app: ServiceFactory
) -> None:
    matrix = MATRIX[service]
    role_tokens = {role.value: bearer(token_for(role)) for role in Role}
    wrong: list[str] = []
    async with service_app(service) as svc:
        served = routes_of(svc.app)
        assert served == set(matrix), (
            f"routes without a matrix entry: {sorted(served - set(matrix))}; "
            f"matrix entries without a route: {sorted(set(matrix) - served)}"
        )
        for route, entry in sorted(matrix.items()):
            allow = entry["allow"]
            for role, headers in role_tokens.items():
                expected = "ok" if allow == "anyone" or role in allow else "403"
                wrong.append(verdict(route, role, await call(svc.http, route, entry, headers), expected, entry) or "")
            for name, headers in invalid_credentials().items():
                expected = "ok" if allow == "anyone" else "401"
                wrong.append(verdict(route, name, await call(svc.http, route, entry, headers), expected, entry) or "")
    problems = [line for line in wrong if line]
    assert not problems, "\n".join(problems)


async def test_a_401_names_what_was_wrong_with_the_token(service_app: ServiceFactory) -> None:
    async with service_app("intake") as svc:
        missing = await svc.http.get("/proposals")
        expired = await svc.http.get("/proposals", headers=invalid_credentials()["expired token"])
        forged = await svc.http.get("/proposals", headers=invalid_credentials()["wrong signature"])
    assert missing.json()["detail"] == "Send `Authorization: Bearer <token>`."
    assert expired.json()["title"] == "Token expired"
    assert "Signature verification failed" in forged.json()["detail"]


async def test_a_403_names_the_roles_that_may(service_app: ServiceFactory) -> None:
    async with service_app("audit") as svc:
        refused = await svc.http.get("/audit/verify", headers=bearer(token_for(Role.UNIT)))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This action is for committee, admin; your role is unit."


# The order of the checks -----------------------------------------------------------------------------
#
# Authentication (401), then the role and whatever else the token alone decides (403), then the
# request's parameters and body (422), then the business rules: a caller who may not use a route
# learns nothing of what it takes. Transport refusals about the bytes (413, 415, a body nested too deep
# or not JSON at all: 400) come first, before the token is read.

INVALID_BODIES: dict[str, dict[str, Any]] = {
    "no body": {},
    "a body that is not an object": {"json": ["not", "an", "object"]},
}
INVALID_VALUE = "not-a-valid-value-" + "x" * 300  # not a number, flag, date, choice, nor short enough


def protected_routes(app: FastAPI, matrix: dict[str, dict[str, Any]]) -> dict[str, tuple[APIRoute, list[str]]]:
    """`METHOD /path` → the route and the roles the matrix allows, for every route that needs a token."""
    found = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods:
            name = f"{method} {context.path}"
            if method != "HEAD" and matrix[name]["allow"] != "anyone":
                found[name] = (route, matrix[name]["allow"])
    return found


def invalid_query(app: FastAPI, route: str) -> dict[str, str]:
    """Every query parameter the route documents, each with a value none of them accepts."""
    method, path = route.split(" ", 1)
    parameters = app.openapi()["paths"][path][method.lower()].get("parameters", [])
    return {param["name"]: INVALID_VALUE for param in parameters if param["in"] == "query"}


async def check_order(
    http: httpx.AsyncClient, route: str, allow: list[str], request: dict[str, Any], wrong: list[str]
) -> None:
    """No token: 401; a role the route refuses: 403; a role it admits: 422. All problem+json."""
    method, path = route.split(" ", 1)
    callers = {"no token": ({}, 401)} | {
        role.value: (bearer(token_for(role)), 422 if role.value in allow else 403) for role in Role
    }
    for caller, (headers, expected) in callers.items():
        response = await http.request(method, concrete(path), headers=headers, **request)
        if response.status_code != expected or not is_problem(response):
            wrong.append(
                f"{route} as {caller}: got {response.status_code} {response.text[:160]!r}; expected {expected}"
            )


@pytest.mark.parametrize("service", SERVICES)
async def test_the_role_is_checked_before_the_body_is_validated(service: str, service_app: ServiceFactory) -> None:
    """An invalid body from a caller the route refuses gets 403, not the validation errors (422) that
    would tell it what the route takes; from a caller it admits, 422."""
    wrong: list[str] = []
    async with service_app(service) as svc:
        routes = {
            name: found for name, found in protected_routes(svc.app, MATRIX[service]).items() if found[0].body_field
        }
        for route, (_, allow) in sorted(routes.items()):
            for request in INVALID_BODIES.values():
                await check_order(svc.http, route, allow, request, wrong)
    assert routes or service == "audit", "no route with a body found"
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_role_is_checked_before_the_query_is_validated(service: str, service_app: ServiceFactory) -> None:
    """The same for query parameters: an out-of-range `limit` or a `from` that is not a date is the
    business of those who may call the route."""
    wrong: list[str] = []
    async with service_app(service) as svc:
        routes = protected_routes(svc.app, MATRIX[service])
        queried = {name: allow for name, (_, allow) in routes.items() if invalid_query(svc.app, name)}
        for route, allow in sorted(queried.items()):
            await check_order(svc.http, route, allow, {"params": invalid_query(svc.app, route)}, wrong)
    assert queried, "no route with query parameters found"
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_unit_token_that_names_no_unit_is_refused_where_units_are_admitted(
    service: str, service_app: ServiceFactory
) -> None:
    """Every route a unit may call acts for, or shows, the caller's own unit: a unit token without a
    `unit` claim is refused (403, saying so) from the token alone, before the body is looked at."""
    unitless = bearer(issue_token(CommonSettings(), subject="u-0", role=Role.UNIT))
    wrong: list[str] = []
    async with service_app(service) as svc:
        routes = {
            name: found for name, found in protected_routes(svc.app, MATRIX[service]).items() if "unit" in found[1]
        }
        for route, (api_route, _) in sorted(routes.items()):
            method, path = route.split(" ", 1)
            valid = {"json": MATRIX[service][route].get("body")}
            for request in (valid, *INVALID_BODIES.values()) if api_route.body_field else ({},):
                response = await svc.http.request(method, concrete(path), headers=unitless, **request)
                if response.status_code != 403 or "names no unit" not in response.text:
                    wrong.append(f"{route}: got {response.status_code} {response.text[:160]!r}; expected 403")
    assert not wrong, "\n".join(wrong)
