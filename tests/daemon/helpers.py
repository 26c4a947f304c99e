"""Helpers for the daemon tests: a real sd_notify socket, configs, the CLI runner."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def syncd_cmd(config: Path | str, *args: str) -> list[str]:
    """argv running ``syncd -c CONFIG ARGS...`` (``python -m syncd``) in a fresh Python."""
    return [sys.executable, "-m", "syncd", "-c", str(config), *args]


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, abstract: bool = False):
        self._dir = tempfile.mkdtemp(prefix="syncd-notify-")  # short path: 108-byte limit
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"syncd-test-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = f"{self._dir}/notify"
            self.sock.bind(self.address)
        self.received: list[dict[str, str]] = []
        self._pos = 0

    def poll(self, timeout: float) -> list[dict[str, str]]:
        """Read every datagram arriving within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        new = []
        try:
            while True:
                data = self.sock.recv(65536)
                fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
                new.append(fields)
                self.sock.settimeout(0.01)
        except (TimeoutError, BlockingIOError):
            pass
        self.received.extend(new)
        return new

    def wait_for(
        self, key: str, value: str | None = None, timeout: float = 15.0, contains: str | None = None
    ) -> dict[str, str]:
        """The next message (after the last one matched) with ``key`` (= ``value`` /
        containing ``contains``); messages before it are passed over."""
        deadline = time.monotonic() + timeout
        while True:
            while self._pos < len(self.received):
                msg = self.received[self._pos]
                self._pos += 1
                if (
                    key in msg
                    and (value is None or msg[key] == value)
                    and (contains is None or contains in msg[key])
                ):
                    return msg
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {key}={value or contains or '*'} within {timeout}s; "
                    f"got {self.received[-10:]}"
                )
            self.poll(0.2)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM and wait; kill if it does not stop. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the daemon did not stop within {timeout} s of SIGTERM") from None
    return proc.returncode


MAPPING = """\
version: 1
description: test people -> people_copy
key: id
fields:
  name: name
"""


def job_config(
    directory: Path,
    state_url: str,
    data_url: str,
    *,
    node: str,
    listen: str | None = None,
    interval: int = 1,
    rows: int = 3,
    target_options: str = "",
) -> Path:
    """A config with one job "people": SQL table people -> SQL table people_copy, every
    ``interval`` seconds. ``data_url`` is a SQLAlchemy URL (its password, if any, goes
    to $SYNCD_TEST_DB_PW, as the SQL connection refuses passwords in URLs).

    Creates the source table with ``rows`` rows if it is missing.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(data_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE IF NOT EXISTS people (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
        )
        if not conn.execute(sa.text("SELECT count(*) FROM people")).scalar():
            for i in range(rows):
                conn.execute(
                    sa.text("INSERT INTO people VALUES (:i, :n)"),
                    {"i": f"p{i}", "n": f"Person {i}"},
                )
    engine.dispose()
    bare = _bare(data_url)
    (directory / "people.yaml").write_text(MAPPING)
    daemon = f"node: {node}, log_format: json"
    if listen:
        daemon += f', listen: "{listen}"'
    state_pw = ", password: {env: SYNCD_TEST_DB_PW}" if db_password(state_url) else ""
    path = directory / f"syncd-{node}.yaml"
    path.write_text(
        "version: 1\n"
        f'state: {{url: "{_bare(state_url)}"{state_pw}}}\n'
        f"daemon: {{{daemon}}}\n"
        "connections:\n"
        "  data:\n"
        "    type: sql\n"
        f'    url: "{bare}"\n'
        "    password: {env: SYNCD_TEST_DB_PW}\n"
        "jobs:\n"
        "  people:\n"
        "    source: {connection: data, table: people, id_column: id}\n"
        "    mapping: people.yaml\n"
        "    target: {connection: data, table: people_copy, key_column: key"
        f"{', ' + target_options if target_options else ''}}}\n"
        f"    schedule: {{interval: {interval}}}\n"
    )
    return path


def _bare(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url)._replace(password=None).render_as_string(hide_password=False)


def db_password(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).password or ""


def start_daemon(config: Path | str, env: dict[str, str]) -> subprocess.Popen:
    """``syncd -c CONFIG daemon`` with its log (stderr) going to a file beside the config.

    A file, not a pipe: a pipe nobody reads fills up and blocks the daemon's logging.
    Read the log with :func:`read_logs`.
    """
    log_path = Path(config).with_suffix(f".{time.monotonic_ns()}.log")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            syncd_cmd(config, "daemon"), env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def read_logs(proc: subprocess.Popen) -> list[dict]:
    """The daemon's JSON log records so far."""
    import json

    text = proc.log_path.read_text()  # type: ignore[attr-defined]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
