"""Config models of the CardDAV connector.

``CardDavConnection`` is a ``connections.NAME`` block with ``type: carddav``;
``CardDavTargetOptions`` is the rest of a job's ``target:`` block.

Example::

    connections:
      contacts:
        type: carddav
        url: https://dav.example.com/          # server root, principal or address book URL
        username: syncd
        password: {env: CARDDAV_PASSWORD}
    jobs:
      addressbook:
        target:
          connection: contacts
          addressbook: Company directory       # name or path under the home set
          vcard_version: "3.0"
          on_external_edit: overwrite
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.paths import ConfigPath
from syncd.secrets import SecretRef
from syncd.urls import redact_url

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals. No name resolution: a name could be
    pointed elsewhere later, so only these count as safe for plaintext."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a usable http(s) URL without credentials."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{redact_url(url)!r}: the scheme must be https:// (or http://)")
    if not parts.hostname:
        raise ValueError(f"{redact_url(url)!r}: no host name")
    if parts.username or parts.password:
        raise ValueError(f"{redact_url(url)!r}: credentials do not belong in the URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{redact_url(url)!r}: a query or fragment is not allowed")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{redact_url(url)!r}: bad port") from None


class CardDavConnection(BaseModel):
    """Where and how to reach a CardDAV server (``connections.NAME``, ``type: carddav``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="https:// URL of the server root (discovery through "
        "/.well-known/carddav), of your principal, or of the address book itself. "
        "Example: https://dav.example.com/"
    )
    username: str | None = Field(None, description="user name; none = no authentication")
    password: SecretRef | None = Field(
        None, description="password as a secret reference: {env: NAME} / {file: PATH}"
    )
    auth: Literal["basic", "digest"] = Field(
        "basic", description="HTTP authentication scheme (basic over TLS, or digest)"
    )
    verify: bool = Field(True, description="verify the server certificate and host name")
    ca_file: ConfigPath | None = Field(
        None,
        description="PEM file of the CA(s) to trust (relative to the config file); "
        "default: the system's trust store",
    )
    allow_plaintext: bool = Field(
        False,
        description="allow http:// to a host that is not loopback (passwords and "
        "contacts then cross the network in clear)",
    )
    timeout: float = Field(30, gt=0, le=3600, description="connect and read timeout, seconds")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        check_url(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> CardDavConnection:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is not")
        if self.username and self.password is None:
            raise ValueError("username is set but password is not")
        parts = urlsplit(self.url)
        plain_remote = parts.scheme.lower() == "http" and not is_loopback(parts.hostname or "")
        if plain_remote and self.allow_plaintext:
            log.warning(
                "CardDAV URL %s is plain http: the password and the contacts travel "
                "unencrypted (allow_plaintext: true)",
                self.url,
            )
        if plain_remote and not self.allow_plaintext:
            raise ValueError(
                f"{self.url}: http:// to a host that is not loopback sends the password and "
                "the contacts in clear; use https:// or set allow_plaintext: true"
            )
        return self

    def describe(self) -> str:
        """URL and user, for logs (no secrets)."""
        return f"{self.url} as {self.username or 'anonymous'}"


class CardDavTargetOptions(BaseModel):
    """A job's ``target:`` block for a CardDAV connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    addressbook: str | None = Field(
        None,
        description="the address book: its display name or last path segment under your "
        "address book home, or a path ('/dav/alice/contacts/'); leave out when the "
        "connection URL is the address book itself",
    )
    create: bool = Field(
        True, description="create the address book (extended MKCOL) when it is missing"
    )
    display_name: str | None = Field(
        None, description="display name given to an address book syncd creates"
    )
    vcard_version: Literal["3.0", "4.0"] = Field(
        "3.0",
        description="vCard version written: 3.0 (RFC 2426; read by every server and client, "
        "iCloud and Google included) or 4.0 (RFC 6350). Radicale 3 damages 4.0 photos "
        "(data: URIs): use 3.0 with Radicale",
    )
    on_external_edit: Literal["overwrite", "keep"] = Field(
        "overwrite",
        description="a card syncd wrote was changed by someone else: overwrite it with the "
        "directory's data, or keep the edit (and stop updating or deleting that card). "
        "Either way it is reported.",
    )
    concurrency: int = Field(4, ge=1, le=32, description="HTTP requests in flight at once")

    @field_validator("addressbook")
    @classmethod
    def _check_addressbook(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("addressbook may not be empty")
        segments = [s for s in value.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise ValueError(f"addressbook {value!r}: '.' and '..' are not allowed")
        if any(ord(c) < 32 for c in value):
            raise ValueError(f"addressbook {value!r}: control characters are not allowed")
        return value
