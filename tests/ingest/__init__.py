"""Tests of dataset ingestion (workers.ingest)."""
