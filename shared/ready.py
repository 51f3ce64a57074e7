"""What `make run` tells a person once the suite is up: wait until every service and the portal answer
`/readyz`, then print once where to go, whom to sign in as, and how to stop (`proposalflow ready`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from shared.settings import PORTAL, SERVICES, service_settings

WHAT = {
    "intake": "submit and review proposals (提案, 审查立案)",
    "assignment": "units, routing, 交办",
    "progress": "where a proposal stands, its timeline, statistics",
    "notify": "in-app inbox (站内消息), deliveries",
    "audit": "the audit log (审计日志)",
}


@dataclass(frozen=True)
class Login:
    """A demo user offered at the portal's /login in development."""

    key: str
    description: str


def local_urls() -> dict[str, str]:
    """The base URL of every service and the portal, from the same settings they start with."""
    urls = {}
    for name in (*SERVICES, PORTAL):
        settings = service_settings(name)
        # A service listening on every interface is reached on this machine at the loopback address.
        wildcard = settings.http_host in ("0.0.0.0", "::", "")  # noqa: S104 - compared, not bound
        host = "127.0.0.1" if wildcard else settings.http_host
        urls[name] = f"http://{host}:{settings.http_port}"
    return urls


def banner(urls: dict[str, str], logins: Sequence[Login], kafka: str) -> str:
    """The lines printed once everything is ready."""
    lines = [
        "",
        "ProposalFlow is ready: every service answers /readyz.",
        "",
        f"  Open the portal (门户):  {urls[PORTAL]}/login",
        "",
        "  Sign in there with one click as a demo user (development only):",
    ]
    width = max((len(login.key) for login in logins), default=0)
    lines += [f"    {login.key:<{width}}  {login.description}" for login in logins]
    lines += ["", "  The services' APIs (OpenAPI at /docs of each):"]
    lines += [f"    {name:<10}  {urls[name]:<24}  {WHAT.get(name, '')}".rstrip() for name in SERVICES]
    lines += [
        f"  Kafka at {kafka}; SQLite databases under .data/.",
        "",
        "  A year of demo data: `make demo` instead of `make run` (or `.venv/bin/proposalflow demo` beside it).",
        "  Stop: Ctrl-C here stops the services; then `make stop` stops Kafka.",
        "",
    ]
    return "\n".join(lines)


async def not_ready(urls: dict[str, str], client: httpx.AsyncClient) -> list[str]:
    """The names whose /readyz does not answer 200 (yet)."""

    async def ready(url: str) -> bool:
        try:
            return (await client.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    answers = await asyncio.gather(*(ready(url) for url in urls.values()))
    return [name for name, ok in zip(urls, answers, strict=True) if not ok]


async def wait_until_ready(
    urls: dict[str, str],
    timeout_s: float,
    interval_s: float = 0.5,
    alive: Callable[[], bool] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[str] | None:
    """Poll until every URL is ready or the time is up; the names still not ready (empty: all are).
    None once `alive()` is False (by default: the process that started us, honcho in `make run`, is
    gone), since nobody is left to tell."""
    deadline = time.monotonic() + timeout_s
    parent = os.getppid()
    still = alive or (lambda: os.getppid() == parent)
    async with httpx.AsyncClient(timeout=2.0, transport=transport) as client:
        while True:
            waiting = await not_ready(urls, client)
            if not still():
                return None
            if not waiting or time.monotonic() >= deadline:
                return waiting
            await asyncio.sleep(interval_s)
