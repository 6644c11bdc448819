"""weights uploads and last checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:41:29.905616
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('weight_files',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('arch', sa.String(length=100), nullable=False),
    sa.Column('tensors', sa.Integer(), nullable=False),
    sa.Column('blob_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['blob_id'], ['blobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_checkpoint_blob_id', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key('fk_models_last_checkpoint_blob', 'blobs', ['last_checkpoint_blob_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint('fk_models_last_checkpoint_blob', type_='foreignkey')
        batch_op.drop_column('last_checkpoint_blob_id')

    op.drop_table('weight_files')
