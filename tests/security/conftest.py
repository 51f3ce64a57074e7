"""The five services' HTTP apps in-process (httpx over ASGI, SQLite migrated with Alembic), and tokens.

No broker is needed: accepted work waits in each service's outbox. Every app gets its own database
under the test's temporary directory, and a fixed clock where the service takes one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import issue_token
from shared.events import Role
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES, CommonSettings

NOW = datetime(2026, 3, 20, 2, tzinfo=UTC)  # a Friday, 10:00 in Dongguan
OWN_UNIT = "dg-zrzyj"
OTHER_UNIT = "dg-jtj"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_for(role: Role, *, subject: str | None = None, unit: str | None = None, ttl: timedelta | None = None) -> str:
    """A token signed with the development secret, which the apps under test verify with."""
    if role == Role.UNIT and unit is None:
        unit = OWN_UNIT
    extra = {"ttl": ttl} if ttl is not None else {}
    return issue_token(CommonSettings(), subject=subject or f"{role.value}-1", role=role, unit=unit, **extra)


def fixed_clock() -> datetime:
    return NOW


def build_service(service: str) -> tuple[ServiceRuntime, FastAPI]:
    if service == "intake":
        from services.intake.app import build as build_intake

        return build_intake(clock=fixed_clock)
    if service == "assignment":
        from services.assignment.app import build as build_assignment

        return build_assignment(clock=fixed_clock)
    if service == "progress":
        from services.progress.app import build as build_progress

        return build_progress(clock=fixed_clock)
    if service == "notify":
        from services.notify.app import build as build_notify
        from services.notify.settings import NotifySettings

        return build_notify(NotifySettings(smtp_host="127.0.0.1", sms_gateway_url="http://127.0.0.1:9/sms"))
    from services.audit.app import build as build_audit

    return build_audit()


@dataclass
class ServiceUnderTest:
    name: str
    app: FastAPI
    runtime: ServiceRuntime
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running(service: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ServiceUnderTest]:
    """One service's app on a fresh SQLite database, without its lifespan (no broker, no periodic jobs)."""
    url = f"sqlite+aiosqlite:///{directory}/{service}.db"
    monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "security-test-key")
    await upgrade_async(service, url)
    runtime, app = build_service(service)
    seed = getattr(app.state, "seed_and_learn", None)
    if seed is not None:
        async with runtime.transaction() as conn:
            await seed(conn)
    # A crash is an answer to assert on (500), not an exception inside the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}") as http:
        yield ServiceUnderTest(service, app, runtime, http)
    await runtime.engine.dispose()


ServiceFactory = Callable[[str], contextlib.AbstractAsyncContextManager[ServiceUnderTest]]


@pytest.fixture
def service_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceFactory:
    """`async with service_app("intake") as svc:` runs one service in-process."""

    def start(service: str) -> contextlib.AbstractAsyncContextManager[ServiceUnderTest]:
        assert service in SERVICES
        return running(service, tmp_path, monkeypatch)

    return start


def is_problem(response: httpx.Response) -> bool:
    """An RFC 9457 problem document whose status matches the response's."""
    if response.headers.get("content-type", "").split(";")[0] != "application/problem+json":
        return False
    body: Any = response.json()
    return isinstance(body, dict) and body.get("status") == response.status_code and bool(body.get("title"))
