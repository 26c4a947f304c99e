"""Job locks: at most one run of a job at a time, across processes and nodes.

* **PostgreSQL** state store: a session-level advisory lock on a stable 64-bit hash of
  ``"syncd:" + job``, taken with ``pg_try_advisory_lock`` on a *dedicated* connection
  that is held for the whole run. PostgreSQL drops the lock when that session ends, so
  a node that dies (kill -9, power loss) releases its jobs to the other nodes. The
  connection has TCP keepalives and a user timeout so a silently dead network is noticed
  within seconds, and :meth:`JobLock.alive` lets the engine check between batches that
  the lock is still ours before it writes more.
* **SQLite** state store: an ``flock`` on a lock file beside the database file
  (``state.db.job-NAME.lock``). ``flock`` (not ``fcntl``/``lockf`` byte ranges) because
  its locks belong to the open file, so two runs in one process also exclude each other.
  SQLite state is single-node: :func:`daemon_lock` refuses a second daemon on one file.

Both raise :class:`syncd.errors.Busy` naming the holder when the lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syncd.errors import Busy, ConnectionFailed

log = logging.getLogger(__name__)

_node_name: str | None = None
# Locks for in-memory SQLite databases (no file to lock): one per process is all there is.
_memory_locks: dict[str, threading.Lock] = {}
_memory_guard = threading.Lock()
# Locks this thread holds, so a nested job_lock() of the same job (the daemon holds the
# lock to check the tick, then the engine takes it for the run) re-enters instead of
# refusing itself.
_held = threading.local()

# libpq keepalive settings for the lock connection: a dead peer is noticed in about
# 10 + 3*3 s of silence, and unacknowledged writes fail after 20 s.
_PG_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,
    "connect_timeout": 10,
}


def set_node_name(node: str) -> None:
    """Name this process reports as a lock holder (the daemon sets cfg.daemon.node)."""
    global _node_name
    _node_name = node


def node_name() -> str:
    """The node name set by :func:`set_node_name`, else the host name."""
    return _node_name or socket.gethostname()


def lock_key(job: str) -> int:
    """Stable signed 64-bit advisory-lock key of a job (same on every node and release)."""
    digest = hashlib.blake2b(f"syncd:{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class JobLock:
    """A held job lock. ``alive()`` says whether it is still certainly held."""

    job: str
    backend: str

    def alive(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _PgLock(JobLock):
    backend = "postgresql"

    def __init__(self, job: str, dbapi_conn: Any, key: int):
        self.job = job
        self._conn = dbapi_conn
        self._key = key
        self._lost = False
        self._mutex = threading.Lock()  # alive() may be called from another thread

    def alive(self) -> bool:
        """True while the lock's session is up. A failed round trip marks it lost for
        good: PostgreSQL may already have given the lock to another node."""
        with self._mutex:
            if self._lost:
                return False
            try:
                with self._conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted "
                        "AND classid = %s AND objid = %s AND objsubid = 1",
                        _split_key(self._key),
                    )
                    row = cur.fetchone()
                held = bool(row and row[0])
            except Exception as err:  # any driver error means the session is gone
                log.warning("job %s: lock connection lost: %s", self.job, err)
                held = False
            if not held:
                self._lost = True
            return held

    def release(self) -> None:
        # Closing the session releases the lock; an explicit unlock first is polite
        # and makes the release immediate even if close() were delayed.
        with self._mutex:
            if not self._lost:
                with contextlib.suppress(Exception), self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            with contextlib.suppress(Exception):
                self._conn.close()
            self._lost = True


class _FileLock(JobLock):
    backend = "sqlite"

    def __init__(
        self, job: str, fd: int | None, path: Path | None, mem: threading.Lock | None = None
    ):
        self.job = job
        self._fd = fd
        self.path = path
        self._mem = mem

    def alive(self) -> bool:
        """A file lock cannot be lost while the file stays open."""
        return self._fd is not None or self._mem is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
        if self._mem is not None:
            self._mem.release()
            self._mem = None


def _split_key(key: int) -> tuple[int, int]:
    """(classid, objid) as pg_locks shows a bigint advisory key (unsigned 32-bit halves)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _engine(store: Any) -> Any:
    engine = getattr(store, "engine", None)
    if engine is None:
        raise TypeError("job_lock needs a state store with an SQLAlchemy .engine")
    return engine


def backend_of(store: Any) -> str:
    """'postgresql', 'sqlite' or another SQLAlchemy backend name of the store."""
    return _engine(store).url.get_backend_name()


@contextlib.contextmanager
def job_lock(
    store: Any, job: str, *, wait: bool = False, node: str | None = None
) -> Iterator[JobLock]:
    """Hold the lock of ``job`` for the ``with`` block; yields a :class:`JobLock`.

    Re-entrant per thread and store: a nested call in the thread that holds the lock
    yields the same lock and leaves releasing it to the outer block.

    ``wait=True`` blocks until the lock is free instead of failing. Raises
    :class:`~syncd.errors.Busy` (naming the holder's node when known) when another run
    holds it, and :class:`~syncd.errors.ConnectionFailed` when PostgreSQL cannot be
    reached for the lock.
    """
    node = node or node_name()
    held: dict[tuple[int, str], JobLock] = _held.__dict__.setdefault("locks", {})
    ident = (id(_engine(store)), job)
    if ident in held:
        yield held[ident]  # re-entered by the thread that holds it: the outer one releases
        return
    backend = backend_of(store)
    if backend == "postgresql":
        lock: JobLock = _pg_acquire(store, job, wait=wait, node=node)
    elif backend == "sqlite":
        lock = _sqlite_acquire(store, f"job-{_safe(job)}", job, wait=wait, node=node)
    else:
        raise ConnectionFailed(
            f"state store backend {backend!r} has no job lock; use SQLite or PostgreSQL"
        )
    held[ident] = lock
    try:
        yield lock
    finally:
        del held[ident]
        lock.release()


def _pg_acquire(store: Any, job: str, *, wait: bool, node: str) -> _PgLock:
    engine = _engine(store)
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    params = {**cparams, **_PG_KEEPALIVE, "application_name": f"syncd:{node}"[:63]}
    try:
        dbapi = getattr(engine.dialect, "loaded_dbapi", None) or engine.dialect.dbapi
        conn = dbapi.connect(*cargs, **params)
    except Exception as err:
        raise ConnectionFailed(
            f"cannot reach the PostgreSQL state store for the lock of job {job}: {_first_line(err)}"
        ) from None
    key = lock_key(job)
    try:
        conn.autocommit = True  # a session lock must not ride on an open transaction
        with conn.cursor() as cur:
            if wait:
                cur.execute("SELECT pg_advisory_lock(%s)", (key,))
                got = True
            else:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                got = bool(cur.fetchone()[0])
        if not got:
            holder = _pg_holder(conn, key)
            raise Busy(f"job {job} is running on node {holder or 'unknown'}")
    except Busy:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    except Exception as err:
        with contextlib.suppress(Exception):
            conn.close()
        raise ConnectionFailed(
            f"PostgreSQL state store: could not take the lock of job {job}: {_first_line(err)}"
        ) from None
    log.debug("job %s: advisory lock %d taken", job, key)
    return _PgLock(job, conn, key)


def _pg_holder(conn: Any, key: int) -> str | None:
    """Node name of the session holding ``key`` (from its application_name)."""
    classid, objid = _split_key(key)
    with contextlib.suppress(Exception), conn.cursor() as cur:
        cur.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
            "AND l.objid = %s AND l.objsubid = 1",
            (classid, objid),
        )
        row = cur.fetchone()
        if row:
            name = str(row[0] or "")
            return name.removeprefix("syncd:") if name else str(row[1] or "")
    return None


def _safe(name: str) -> str:
    """A file-name-safe form of a job name (unsafe names get a hash suffix)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
    if cleaned != name:
        cleaned += "-" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return cleaned


def _sqlite_file(store: Any) -> Path | None:
    database = _engine(store).url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).resolve()


def lock_path(store: Any, name: str) -> Path | None:
    """Path of the lock file ``name`` beside an SQLite database (None if in-memory)."""
    db = _sqlite_file(store)
    return None if db is None else db.with_name(f"{db.name}.{name}.lock")


def _sqlite_acquire(store: Any, name: str, job: str, *, wait: bool, node: str) -> _FileLock:
    path = lock_path(store, name)
    if path is None:
        with _memory_guard:
            mem = _memory_locks.setdefault(f"{id(_engine(store))}:{name}", threading.Lock())
        if not mem.acquire(blocking=wait):
            raise Busy(f"job {job} is running in this process")
        return _FileLock(job, None, None, mem)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise Busy(f"job {job} is running on node {holder}") from None
    except BaseException:
        os.close(fd)
        raise
    # Who holds it, for the Busy message of the next one who tries.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{node} pid {os.getpid()} since {time.strftime('%FT%T%z')}\n".encode(), 0)
    return _FileLock(job, fd, path)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "unknown"


@contextlib.contextmanager
def daemon_lock(store: Any, *, node: str | None = None) -> Iterator[JobLock | None]:
    """Refuse a second daemon on one SQLite state store (SQLite state is single-node).

    Yields the held lock (None for PostgreSQL, where several daemons are the point).
    Raises :class:`~syncd.errors.Busy` with a clear message when another daemon has it.
    """
    if backend_of(store) != "sqlite":
        yield None
        return
    try:
        lock = _sqlite_acquire(store, "daemon", "daemon", wait=False, node=node or node_name())
    except Busy as err:
        holder = str(err).split(" on node ", 1)[-1]
        raise Busy(
            f"SQLite state is single-node; another daemon holds it ({holder}). "
            "Use a PostgreSQL state store to run several daemons."
        ) from None
    try:
        yield lock
    finally:
        lock.release()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
