"""Fixtures for the daemon tests. PostgreSQL comes from tests/servers/fixtures_postgres.py
(``postgres_url``: a fresh database per test), slapd from fixtures_slapd.py."""
