"""Alembic migrations per service, configured in code: `proposalflow migrate` runs them.

Each service keeps its revisions in `services/<name>/migrations/versions`; its `env.py` calls
:func:`run_migrations` with the service's metadata. The plumbing tables every service has (outbox, inbox,
parked events, idempotency keys: shared/db.py `add_plumbing_tables`) have one history of their own, the
`plumbing` branch in `shared/migrations/versions`, a second version location of every service: a change
to them is one revision there, applied to each service's database by `upgrade` (to all heads). Each
service's 0001 depends on the branch's base, so a database made before the branch existed counts the
plumbing revisions its own 0001 and 0003 did as applied (docs/decisions.md, "One migration history for
the plumbing").
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from shared.db import create_engine
from shared.settings import service_settings

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
PLUMBING_VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
"""The `plumbing` branch: the revisions of the tables shared/db.py adds to every service."""


def alembic_config(service: str, database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("path_separator", "os")
    locations = (SERVICES_DIR / service / "migrations" / "versions", PLUMBING_VERSIONS)
    config.set_main_option("version_locations", os.pathsep.join(str(location) for location in locations))
    config.attributes["service"] = service
    config.attributes["database_url"] = database_url or service_settings(service).database_url
    return config


def upgrade(service: str, database_url: str | None = None, revision: str = "heads") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def run_migrations(metadata: MetaData) -> None:
    """Body of a service's `env.py`: run the migrations online against the service's database."""
    url = context.config.attributes["database_url"]

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())


async def upgrade_async(service: str, database_url: str | None = None, revision: str = "heads") -> None:
    """:func:`upgrade` from inside a running event loop (Alembic's env runs its own loop)."""
    await asyncio.to_thread(upgrade, service, database_url, revision)
