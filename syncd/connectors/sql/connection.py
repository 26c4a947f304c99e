"""SQL connections (SQLAlchemy): the ``connections:`` block of ``type: sql``.

The URL never holds the password: it comes from a secret reference and is put into the
SQLAlchemy URL object only when the engine is made, so it cannot show up in a config
dump, a log line or an error (messages use the URL with the password masked).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from syncd.contracts import CheckResult
from syncd.errors import ConfigError, ConnectionFailed
from syncd.paths import config_relative
from syncd.secrets import SecretRef
from syncd.urls import url_secret_problem

log = logging.getLogger(__name__)

_SECRET_ARGS = frozenset({"password", "passwd", "sslpassword"})


class SqlConnection(BaseModel):
    """A database reachable through SQLAlchemy (SQLite, PostgreSQL, others by driver)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="SQLAlchemy URL WITHOUT the password, e.g. "
        "postgresql+psycopg://inventory@db.example.com/inventory or sqlite:///inventory.db "
        "(a relative SQLite path is relative to the config file)"
    )
    password: SecretRef | None = Field(
        None, description="the database password: {env: NAME}, {file: PATH} or {credential: NAME}"
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict,
        description="extra driver arguments, e.g. {sslmode: verify-full, sslrootcert: ca.pem}",
    )
    timeout: float = Field(10.0, gt=0, description="seconds to wait for a connection")

    @field_validator("connect_args")
    @classmethod
    def _no_literal_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A password here would sit in the config file in clear, past every secret rule.
        found = sorted(k for k in value if k.lower() in _SECRET_ARGS)
        if found:
            raise ValueError(
                f"connect_args must not hold {', '.join(found)}: use password: "
                "{env: NAME} (or {file: PATH}, {credential: NAME})"
            )
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        try:
            u = make_url(value)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ValueError("not a database URL (dialect+driver://user@host:port/db)") from None
        if u.password is not None or url_secret_problem(value):
            raise ValueError(
                "the URL must not contain the password; use password: {env: NAME} "
                "(or {file: PATH}, {credential: NAME})"
            )
        if u.drivername in ("postgresql", "postgres"):
            # SQLAlchemy reads "postgresql://" as psycopg2; syncd ships psycopg 3.
            u = u.set(drivername="postgresql+psycopg")
        if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
            path = config_relative(Path(u.database).expanduser(), info)
            u = u.set(database=str(path))
        return u.render_as_string(hide_password=False)

    def safe_url(self) -> str:
        """The URL for messages (never has a password: the model refuses one)."""
        return make_url(self.url).render_as_string(hide_password=True)

    def sqlalchemy_url(self) -> URL:
        """The URL with the password filled in (resolves the secret: SecretError)."""
        u = make_url(self.url)
        if self.password is not None:
            u = u.set(password=self.password.reveal())
        return u

    @property
    def backend(self) -> str:
        return make_url(self.url).get_backend_name()


def make_engine(conn: SqlConnection) -> Engine:
    """An Engine for ``conn``; connects lazily. Raises ConfigError for a missing driver,
    SecretError when the password cannot be resolved."""
    u = conn.sqlalchemy_url()
    args = dict(conn.connect_args)
    backend = u.get_backend_name()
    if backend == "postgresql":
        args.setdefault("connect_timeout", max(1, round(conn.timeout)))
    elif backend == "sqlite":
        args.setdefault("timeout", conn.timeout)
    try:
        return create_engine(u, connect_args=args, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError):
        raise ConfigError(
            f"sql connection {conn.safe_url()}: no database driver installed for {u.drivername!r}"
        ) from None


def error_line(err: BaseException, secret: str | None = None) -> str:
    """First line of a database error, without SQLAlchemy's SQL echo or a password."""
    orig = getattr(err, "orig", None)
    msg = str(orig if orig is not None else err).strip()
    line = msg.splitlines()[0].strip() if msg else type(err).__name__
    if secret:
        line = line.replace(secret, "***")
    return line


def connect_check(engine: Engine, conn: SqlConnection) -> None:
    """Open one connection and run ``SELECT 1``.

    Raises ConnectionFailed (unreachable, refused, bad credentials, no such database)."""
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except DBAPIError as err:
        raise ConnectionFailed(
            f"sql connection {conn.safe_url()}: {error_line(err, _secret(conn))}"
        ) from None


def _secret(conn: SqlConnection) -> str | None:
    if conn.password is None:
        return None
    try:
        return conn.password.reveal()
    except Exception:
        return None


def doctor_connect(engine: Engine, conn: SqlConnection) -> CheckResult:
    """The 'reachable and authenticated' line of `syncd doctor`."""
    try:
        connect_check(engine, conn)
    except ConnectionFailed as err:
        return CheckResult(
            "database reachable",
            False,
            str(err),
            "check host, port, database name, user and the password secret",
        )
    return CheckResult("database reachable", True, conn.safe_url())
