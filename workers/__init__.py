"""Graft's workers: the Celery app, thin tasks, and the transfer pipeline (`workers.pipeline`)."""
