"""Alembic environment of the assignment service."""

from services.assignment.store import metadata
from shared.migrate import run_migrations

run_migrations(metadata)
