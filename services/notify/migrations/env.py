"""Alembic environment of the notify service."""

from services.notify.store import metadata
from shared.migrate import run_migrations

run_migrations(metadata)
