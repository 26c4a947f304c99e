"""Fixtures for the daemon tests.

``pg_url``: a fresh PostgreSQL database. It uses the shared ``postgres_url`` fixture
(tests/servers/fixtures_postgres.py) when that exists, else a private cluster started
for this test session (the FACTS.md recipe: initdb + pg_ctl as user postgres).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.servers.ports import free_port, wait_port


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"PostgreSQL program {name} not found (apt-get install postgresql)")


@pytest.fixture(scope="session")
def _private_pg():
    # Not under pytest's tmp dir: that is mode 0700 root, and PostgreSQL runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
    shutil.chown(base, "postgres")
    port = free_port()
    data = base / "data"
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            _pg_bin("initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "syncd",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {base}",
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    wait_port(port)
    try:
        yield f"postgresql+psycopg://syncd@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(request):
    """SQLAlchemy URL of an empty PostgreSQL database of its own."""
    try:
        return request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        pass
    server = request.getfixturevalue("_private_pg")
    import sqlalchemy as sa

    name = "d" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"
