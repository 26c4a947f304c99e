"""Fixtures: one private PostgreSQL cluster per test session (``postgres_server``), a
fresh database per test (``postgres_url``), and a cluster of its own for tests that stop
or restart the server (``postgres_private``)."""

from __future__ import annotations

import pytest

from tests.servers.postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL cluster (started once, about 1.5 s)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """SQLAlchemy URL (postgresql+psycopg://, with the password) of a new empty database."""
    return postgres_server.create_database()


@pytest.fixture
def postgres_private():
    """A cluster for this test alone: stop()/start()/restart() do not disturb others."""
    with PostgresCluster() as cluster:
        yield cluster


_PG_FIXTURES = {"postgres_server", "postgres_url", "postgres_private", "pg_db"}


def pytest_collection_modifyitems(items):
    """Mark every test that starts PostgreSQL, so `-m "not postgres"` leaves them out."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (
            _PG_FIXTURES & set(getattr(item, "fixturenames", ()))
            or "postgres" in str(params.get("db", "")) + str(params.get("url", ""))
            or str(params.get("harness_name", "")).endswith("postgres")
            or params.get("backend") == "postgres"
        ):
            item.add_marker("postgres")
