"""job lifecycle: heartbeats, dispatch times, training-state checkpoints, events, idempotency keys, webhooks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='5'))
        batch_op.add_column(sa.Column('queue', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('state_blob_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('checkpoint_blob_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('webhook_status', sa.String(length=20), nullable=True))
        batch_op.create_foreign_key('fk_jobs_state_blob', 'blobs', ['state_blob_id'], ['id'])
        batch_op.create_foreign_key('fk_jobs_checkpoint_blob', 'blobs', ['checkpoint_blob_id'], ['id'])
    op.create_table(
        'job_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('type', sa.String(length=20), nullable=False),
        sa.Column('data', JSON, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_job_events_job_id', 'job_events', ['job_id'], unique=False)
    op.create_table(
        'idempotency_keys',
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_sha256', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('idempotency_keys')
    op.drop_index('ix_job_events_job_id', table_name='job_events')
    op.drop_table('job_events')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_checkpoint_blob', type_='foreignkey')
        batch_op.drop_constraint('fk_jobs_state_blob', type_='foreignkey')
        for column in ('webhook_status', 'checkpoint_blob_id', 'state_blob_id', 'heartbeat_at', 'dispatched_at',
                       'worker', 'queue', 'priority'):
            batch_op.drop_column(column)
