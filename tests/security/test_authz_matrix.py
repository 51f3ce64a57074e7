"""Every HTTP route of every service × every role and every kind of bad token gets exactly the answer
the authorisation matrix (authz_matrix.yaml) says: allowed roles get past the checks, other roles 403,
no or an invalid token 401, refusals as problem+json.

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
from fastapi.routing import iter_route_contexts

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
