"""Secret references: ``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}``.

A secret is never written in the config itself. Connector config models declare a field
of type :class:`SecretRef`; it is resolved only when a connection is made, and its
``repr``/``str`` never show the value, so it cannot leak into logs, errors or plans.
A relative ``{file: PATH}`` is relative to the config file that names it.
``{credential: NAME}`` reads ``$CREDENTIALS_DIRECTORY/NAME`` (systemd LoadCredential=).
Outside the service (a root shell running ``syncd validate``, ``plan``, ``doctor``) there
is no ``$CREDENTIALS_DIRECTORY``; then NAME is looked up where systemd itself keeps
credentials, ``/etc/credstore/NAME`` and ``/run/credstore/NAME``, so the shell sees the
secret the service gets from ``LoadCredential=NAME``. Encrypted credentials
(``/etc/credstore.encrypted``) need ``systemd-creds`` to decrypt and are named, not read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from syncd.errors import SecretError

CREDSTORE_DIRS: tuple[Path, ...] = (Path("/etc/credstore"), Path("/run/credstore"))
"""Where systemd's ``LoadCredential=NAME`` (no path) finds NAME; searched in this order
when ``$CREDENTIALS_DIRECTORY`` is not set."""
ENCRYPTED_CREDSTORE_DIRS: tuple[Path, ...] = (
    Path("/etc/credstore.encrypted"),
    Path("/run/credstore.encrypted"),
)
"""Where ``LoadCredentialEncrypted=NAME`` finds NAME: only systemd can decrypt these."""


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

    @field_validator("file")
    @classmethod
    def _config_relative(cls, value: str | None, info: ValidationInfo) -> str | None:
        # {file: secrets/x} is relative to the config file, like every other path in it
        # (not to the working directory, which differs between a shell and the service).
        if value is None:
            return None
        from syncd.paths import config_relative

        return str(config_relative(Path(value).expanduser(), info))

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a secret reference needs exactly one of env, file, credential")
        if self.credential is not None and (
            "/" in self.credential or self.credential in (".", "..")
        ):
            # systemd refuses such names too; here they would read outside the store.
            raise ValueError("a credential name is a file name, without '/'")
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
        path = Path(self.file) if self.file else self._credential_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"secret {self.describe()}: no such file {path}") from None
        except PermissionError:
            raise SecretError(f"secret {self.describe()}: permission denied on {path}") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret {self.describe()}: not UTF-8 text") from None
        return text[:-1] if text.endswith("\n") else text

    def _credential_path(self) -> Path:
        """The file of ``{credential: NAME}``: in $CREDENTIALS_DIRECTORY under systemd,
        else the first credential store holding NAME. Raises SecretError naming every
        place searched (and an encrypted copy found, which syncd cannot read)."""
        name = str(self.credential)
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if base:
            return Path(base) / name
        for store in CREDSTORE_DIRS:
            if (store / name).exists():
                return store / name
        searched = ", ".join(str(d / name) for d in CREDSTORE_DIRS)
        for store in ENCRYPTED_CREDSTORE_DIRS:
            if (store / name).exists():
                raise SecretError(
                    f"secret {self.describe()}: $CREDENTIALS_DIRECTORY is not set and "
                    f"{store / name} is encrypted: only systemd can decrypt it "
                    "(LoadCredentialEncrypted=). From a shell, run syncd under systemd, e.g. "
                    f"systemd-run -P --property=LoadCredentialEncrypted={name} syncd ..., "
                    f"or put a root-only plain copy in {CREDSTORE_DIRS[0] / name} "
                    "(systemd-creds decrypt)"
                )
        raise SecretError(
            f"secret {self.describe()}: $CREDENTIALS_DIRECTORY is not set (systemd's "
            f"LoadCredential= provides it) and no file {searched}"
        )

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
