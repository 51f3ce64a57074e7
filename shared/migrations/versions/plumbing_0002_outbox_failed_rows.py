"""outbox: failed_at and error, for a row the relay could never publish

Revision ID: plumbing_0002
Revises: plumbing_0001
Create Date: 2026-12-04 09:30:00.000000

The relay marks a row that failed for good (too large for its topic, not authorized) instead of
retrying it for ever, which held back every row behind it; `proposalflow outbox retry` clears the
mark. Both columns are nullable, so existing rows need no backfill and SQLite adds them in place.

Once each service's 0003 (now empty, depending on this revision); a database created before the branch
existed and migrated to 0003 has the columns already.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "plumbing_0002"
down_revision: str | None = "plumbing_0001"
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
