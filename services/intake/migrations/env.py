"""Alembic environment of the intake service."""

from services.intake.store import metadata
from shared.migrate import run_migrations

run_migrations(metadata)
