"""Pipeline tests: real data, no services."""
