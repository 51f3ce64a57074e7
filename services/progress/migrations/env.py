"""Alembic environment of the progress service."""

from services.progress.store import metadata
from shared.migrate import run_migrations

run_migrations(metadata)
