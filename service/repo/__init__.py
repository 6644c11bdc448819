"""Database access, one module per resource: the single place where queries (and later tenant scoping) live."""
