"""A private PostgreSQL cluster (Debian's), on 127.0.0.1 and a random port.

initdb runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as
root), in a directory that user owns; TCP connections need the password (scram), so
wrong-password tests are real. fsync is off: these clusters are throwaway.

Usage::

    with PostgresCluster() as pg:
        url = pg.create_database()   # postgresql+psycopg://syncd:PW@127.0.0.1:PORT/db_1
        pg.stop(); pg.start()        # for "server down" tests
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers.ports import free_port

USER = "syncd"
PASSWORD = "pg-test-Secret-7"


def pg_bindir() -> Path:
    """Directory of initdb/pg_ctl: PATH first, then Debian's versioned directories."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found (run scripts/install.d/20-postgres.sh)"
        )
    return Path(candidates[-1]).parent


class PostgresCluster:
    """A throwaway cluster; ``url(db)`` gives a SQLAlchemy URL with the password."""

    def __init__(self, directory: str | Path | None = None):
        # Not under pytest's tmp_path: /tmp/pytest-of-root is mode 700 and the postgres
        # user must be able to reach its data directory.
        self.dir = Path(directory or tempfile.mkdtemp(prefix="syncd-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = USER
        self.password = PASSWORD
        self.bindir = pg_bindir()
        self._counter = itertools.count(1)
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = ""
            if (self.dir / "log").exists():
                log = (self.dir / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{' '.join(args[:1])} failed ({result.returncode}): "
                f"{result.stderr.strip()} {result.stdout.strip()[-500:]} {log}"
            )
        return result

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()

    def start(self) -> None:
        opts = f"-F -h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{pw}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for psycopg directly."""
        return (
            f"host=127.0.0.1 port={self.port} user={self.user} "
            f"password={self.password} dbname={database}"
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its SQLAlchemy URL."""
        import psycopg

        name = name or f"db_{next(self._counter)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, database: str, sql: str, *params) -> list[tuple]:
        """Run one statement as the superuser and return its rows (if any)."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def __enter__(self) -> PostgresCluster:
        self.setup()
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if os.environ.get("SYNCD_KEEP_POSTGRES") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)
