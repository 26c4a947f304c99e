"""Secret references: ``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}``.

A secret is never written in the config itself. Connector config models declare a field
of type :class:`SecretRef`; it is resolved only when a connection is made, and its
``repr``/``str`` never show the value, so it cannot leak into logs, errors or plans.
``{credential: NAME}`` reads ``$CREDENTIALS_DIRECTORY/NAME`` (systemd LoadCredential=).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from syncd.errors import SecretError


class SecretRef(BaseModel):
    """A reference to a secret; exactly one of env, file, credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: str | None = None
    credential: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets may not be written in the config; use {env: NAME}, "
                "{file: PATH} or {credential: NAME}"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a secret reference needs exactly one of env, file, credential")
        return self

    def describe(self) -> str:
        """Where the secret comes from (safe to print)."""
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return f"systemd credential {self.credential}"

    def reveal(self) -> str:
        """Return the secret value. Raises SecretError (without the value) if missing.

        A single trailing newline is stripped from files, as editors add one.
        """
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"secret {self.describe()} is not set")
            return value
        if self.file:
            path = Path(self.file)
        else:
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise SecretError(
                    f"secret {self.describe()}: $CREDENTIALS_DIRECTORY is not set "
                    "(LoadCredential= in the systemd unit provides it)"
                )
            path = Path(base) / str(self.credential)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"secret {self.describe()}: no such file {path}") from None
        except PermissionError:
            raise SecretError(f"secret {self.describe()}: permission denied on {path}") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret {self.describe()}: not UTF-8 text") from None
        return text[:-1] if text.endswith("\n") else text

    def check(self) -> str | None:
        """None if the secret resolves, else the (secret-free) problem."""
        try:
            self.reveal()
        except SecretError as err:
            return str(err)
        return None

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"

    __str__ = __repr__
