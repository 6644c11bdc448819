"""Graft's HTTP face: FastAPI app, settings, database models and the checkpoint store."""
