"""落实评价: the proposers' evaluation of what was implemented, and when a measure was promised and done

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 09:30:00.000000

New columns are nullable or have a server default, so existing rows need no backfill; a proposal
implemented before this revision has no 落实评价 state and is not asked to evaluate (its 落实 came
before the rule).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("implementation_round", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("implementation_evaluation", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("implementation_evaluation_due", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("measure_request_due", sa.Date(), nullable=True))
    with op.batch_alter_table("measures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("done_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reopened", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("promised_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "implementation_evaluations",
        sa.Column("proposal_id", sa.String(length=100), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("signer_id", sa.String(length=200), nullable=False),
        sa.Column("grade", sa.String(length=50), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reopened_measures", sa.JSON(), nullable=False),
        sa.Column("new_measure_requested", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "round", "signer_id", name=op.f("pk_implementation_evaluations")),
    )


def downgrade() -> None:
    op.drop_table("implementation_evaluations")
    with op.batch_alter_table("measures", schema=None) as batch_op:
        batch_op.drop_column("promised_at")
        batch_op.drop_column("reopened")
        batch_op.drop_column("done_at")
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_column("measure_request_due")
        batch_op.drop_column("implementation_evaluation_due")
        batch_op.drop_column("implementation_evaluation")
        batch_op.drop_column("implementation_round")
