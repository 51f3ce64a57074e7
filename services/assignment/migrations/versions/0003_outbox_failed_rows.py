"""outbox: failed_at and error, for a row the relay could never publish (now in the plumbing branch)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:00:00.000000

The columns are added by the `plumbing` branch's revision plumbing_0002 (shared/migrations/versions),
written once for every service; this revision stays, empty, so that a database already at 0003 keeps a
revision id Alembic knows, and it depends on plumbing_0002, so Alembic counts the columns as there.
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "plumbing_0002"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
