"""hash chain: every entry linked to the one before (globally and per proposal), a chain head, and
triggers that refuse UPDATE and DELETE on the log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 00:30:05.492569
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.audit.domain import ChainTip, chain
from services.audit.settings import AuditSettings
from shared.db import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "audit_entries is append-only (审计日志): {op} refused"

# SQLite drops a table's triggers when a batch migration rebuilds it: a later revision that alters
# audit_entries in batch mode must create these again.
SQLITE_TRIGGERS = {
    "audit_entries_no_update": "UPDATE",
    "audit_entries_no_delete": "DELETE",
}


def _chain_existing_entries() -> None:
    """Entries recorded before the chain existed are linked in the order they were recorded.

    Importing the service's chain rules is safe here only because the canonical form can never
    change: every entry ever written must keep verifying."""
    bind = op.get_bind()
    entries = sa.table(
        "audit_entries",
        *(
            sa.column(name)
            for name in ("id", "event_id", "source", "type", "subject", "actor_id", "actor_role", "actor_unit")
        ),
        *(sa.column(name) for name in ("correlation_id", "topic", "partition", "offset")),
        sa.column("time", UTCDateTime()),
        sa.column("recorded_at", UTCDateTime()),
        sa.column("payload", sa.JSON()),
    )
    key = AuditSettings().key
    log_tip = ChainTip()
    subject_tips: dict[str, ChainTip] = {}
    for row in bind.execute(sa.select(entries).order_by(entries.c.id)).mappings().all():
        linked = chain(dict(row), log_tip=log_tip, subject_tip=subject_tips.get(row["subject"]), key=key)
        bind.execute(
            sa.text(
                "UPDATE audit_entries SET seq = :seq, prev_hash = :prev_hash, subject_seq = :subject_seq, "
                "subject_prev_hash = :subject_prev_hash, hash = :hash WHERE id = :id"
            ),
            {name: linked[name] for name in ("id", "seq", "prev_hash", "subject_seq", "subject_prev_hash", "hash")},
        )
        log_tip = ChainTip(linked["seq"], linked["hash"])
        if row["subject"] is not None:
            subject_tips[row["subject"]] = ChainTip(linked["subject_seq"], linked["hash"])
    if log_tip.seq:
        head = sa.table("audit_chain_head", *(sa.column(name) for name in ("chain", "seq", "hash", "updated_at")))
        bind.execute(sa.insert(head).values(chain="log", seq=log_tip.seq, hash=log_tip.hash, updated_at=sa.func.now()))


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("chain", sa.String(length=20), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_chain_head")),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("subject_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("subject_prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _chain_existing_entries()
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_actor_unit"), ["actor_unit"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_time"), ["time"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_type"), ["type"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_entries_seq"), ["seq"])
        batch_op.create_unique_constraint("uq_audit_entries_subject_seq", ["subject", "subject_seq"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{APPEND_ONLY.format(op='%')}', TG_OP USING ERRCODE = 'insufficient_privilege'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
            "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()"
        )
    else:
        for name, statement in SQLITE_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {statement} ON audit_entries "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(op=statement)}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION audit_entries_append_only()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_entries_subject_seq", type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_audit_entries_seq"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_audit_entries_type"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_time"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_actor_unit"))
        batch_op.drop_column("hash")
        batch_op.drop_column("subject_prev_hash")
        batch_op.drop_column("subject_seq")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")

    op.drop_table("audit_chain_head")
