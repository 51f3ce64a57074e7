"""门户 wiring: the FastAPI app, its session cookie, its templates and static files.

The portal keeps no data. A page is read from the services' APIs with the signed-in person's JWT
(kept in an HttpOnly, SameSite=Lax cookie), and a form is sent to the API of the service that owns
the change; the services check the role and the unit, the portal only leaves out what a role cannot do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.portal import pages
from services.portal.client import Backend
from services.portal.settings import PortalSettings
from shared.http import install_health_routes
from shared.policy import load_policy
from shared.settings import DEVELOPMENT_JWT_SECRET, CommonSettings

HERE = Path(__file__).resolve().parent


def build(
    settings: PortalSettings | None = None,
    common: CommonSettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The portal; `transport` lets tests answer for the services."""
    settings = settings or PortalSettings()
    common = common or CommonSettings()
    backend = Backend(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = FastAPI(title="ProposalFlow 门户", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = pages.Portal(
        backend=backend,
        common=common,
        settings=settings,
        policy=load_policy(common.policy_file),
        # The development login mints tokens for anyone; it is only offered where anyone could
        # mint them anyway (the built-in development secret), or where it is asked for explicitly.
        dev_login=common.jwt_algorithm == "HS256"
        and (settings.dev_login or common.jwt_secret == DEVELOPMENT_JWT_SECRET),
    )

    async def readiness() -> dict[str, str]:
        async def reachable(url: str) -> str:
            try:
                answer = await backend.http.get(f"{url}/healthz")
            except httpx.HTTPError:
                return "unreachable"
            return "ok" if answer.status_code == 200 else f"status {answer.status_code}"

        names = list(backend.urls)
        results = await asyncio.gather(*(reachable(backend.urls[name]) for name in names))
        return dict(zip(names, results, strict=True))

    install_health_routes(app, readiness)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    return app


app = build()
