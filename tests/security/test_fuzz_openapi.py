"""Property-based fuzzing of every service's OpenAPI document with schemathesis: whatever a client
sends, valid or not, no route answers 5xx, and every answer is one the document declares (status
code, content type, body schema).

Each operation is called with a token of the first role the authorisation matrix allows on it, so
the fuzzing reaches past the role check. The apps run in-process on SQLite, without their lifespan
(no broker, no periodic jobs). `PROPOSALFLOW_FUZZ_EXAMPLES` sets the examples per operation (a few
in `make test`, many more in `make soak`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import negative_data_rejection, not_a_server_error, positive_data_acceptance
from schemathesis.generation import GenerationMode
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.events import Role
from shared.migrate import upgrade
from shared.settings import SERVICES
from tests.security.conftest import bearer, build_service, token_for
from tests.security.test_authz_matrix import MATRIX

pytestmark = pytest.mark.security

EXAMPLES = int(os.environ.get("PROPOSALFLOW_FUZZ_EXAMPLES", "12"))


def without_lifespan(app: ASGIApp) -> ASGIApp:
    """The app with its lifespan refused, which ASGI servers (and schemathesis) take as 'none'."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan while fuzzing: no broker, no periodic jobs")
        await app(scope, receive, send)

    return asgi


def fuzzable(service: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The service's app on a fresh SQLite database, and its OpenAPI schema loaded from the app."""
    url = f"sqlite+aiosqlite:///{directory}/{service}.db"
    monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "fuzz-key")
    upgrade(service, url)
    runtime, app = build_service(service)
    seed = getattr(app.state, "seed_and_learn", None)

    async def prepare() -> None:
        if seed is not None:
            async with runtime.transaction() as conn:
                await seed(conn)
        # The requests run on schemathesis' own event loop: let them open their own connections.
        await runtime.engine.dispose()

    asyncio.run(prepare())
    return schemathesis.openapi.from_asgi("/openapi.json", without_lifespan(app))


def caller_for(service: str, method: str, path: str) -> dict[str, str]:
    allow = MATRIX[service][f"{method.upper()} {path}"]["allow"]
    return {} if allow == "anyone" else bearer(token_for(Role(allow[0])))


# Schema-valid requests may still break a rule the schema cannot express (a category from the policy, a
# unit from the catalog, an id that exists): a 422 problem then, so not every valid request is accepted.
# And a query parameter no route declares is ignored, as HTTP allows, rather than refused.
NOT_CHECKED = [positive_data_acceptance, negative_data_rejection]


def fuzz_test(operation: Any, mode: GenerationMode, headers: dict[str, str], excluded: list[Any]) -> Any:
    """A hypothesis test of one operation: generated requests, each answer validated against the schema."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, excluded_checks=[*excluded, *NOT_CHECKED])

    return fuzz


# schemathesis' pytest plugin (`schema.parametrize()`) does not run on pytest 9 yet, so the operations
# are walked here and each one is a hypothesis test of its own; every failure is reported at the end.
@pytest.mark.parametrize("service", SERVICES)
def test_no_route_fails_or_answers_outside_its_schema(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = fuzzable(service, tmp_path, monkeypatch)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = caller_for(service, operation.method, operation.path)
        # Without a broker /readyz rightly answers 503, which its schema documents.
        excluded = [not_a_server_error] if operation.path == "/readyz" else []
        takes_input = bool(operation.path_parameters or operation.query or operation.body)
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            fuzz = fuzz_test(operation, mode, headers, excluded)
            try:
                fuzz()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
        operations += 1
    assert operations >= 4, f"{service}: only {operations} operations found in its OpenAPI document"
    assert not failures, "\n\n".join(failures)
