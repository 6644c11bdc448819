"""adapt jobs: target dataset

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target_dataset_id', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_jobs_target_dataset_id', ['target_dataset_id'], unique=False)
        batch_op.create_foreign_key('fk_jobs_target_dataset', 'datasets', ['target_dataset_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_target_dataset', type_='foreignkey')
        batch_op.drop_index('ix_jobs_target_dataset_id')
        batch_op.drop_column('target_dataset_id')
