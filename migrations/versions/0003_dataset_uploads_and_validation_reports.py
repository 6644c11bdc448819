"""dataset uploads and validation reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 11:20:44.588713
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blob_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('report', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))
        batch_op.create_foreign_key('fk_datasets_blob', 'blobs', ['blob_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_constraint('fk_datasets_blob', type_='foreignkey')
        batch_op.drop_column('error')
        batch_op.drop_column('report')
        batch_op.drop_column('blob_id')

