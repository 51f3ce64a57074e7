"""outbox: failed_at and error, for a row the relay could never publish

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:00:00.000000

The relay marks a row that failed for good (too large for its topic, not authorized) instead of
retrying it for ever, which held back every row behind it; `proposalflow outbox retry` clears the
mark. Both columns are nullable, so existing rows need no backfill and SQLite adds them in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("failed_at")
