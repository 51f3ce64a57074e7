"""Alembic environment of the audit service."""

from services.audit.store import metadata
from shared.migrate import run_migrations

run_migrations(metadata)
