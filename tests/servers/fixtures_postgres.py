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
