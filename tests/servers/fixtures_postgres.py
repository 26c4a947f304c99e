"""Fixtures for postgres tests (filled in by the postgres work)."""
