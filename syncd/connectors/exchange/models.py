"""Config models of the Exchange connector (pydantic v2, ``extra="forbid"``).

``ExchangeConnection`` is a ``connections.NAME`` block with ``type: exchange``::

    connections:
      exchange:
        type: exchange
        endpoint: https://mail.example.com/EWS/Exchange.asmx
        username: EXAMPLE\\svc-syncd          # NTLM: DOMAIN\\user; Basic: UPN or user
        password: {env: SYNCD_EWS_PASSWORD}
        auth: ntlm                            # ntlm | basic | oauth
        mailbox: addressbook@example.com      # the mailbox whose folders are written
        impersonation: false                  # act on `mailbox` via ApplicationImpersonation
        ca_file: /etc/ssl/private-ca.pem      # optional; default: the system trust store
        version: "2016"                       # 2013 | 2013_SP1 | 2016 | 2019
        timeout: 60

``ExchangeTargetOptions`` is the rest of a job's ``target`` block::

    target:
      connection: exchange
      folder: Contacts/Company Directory      # or public:/Company/Contacts
      kind: contact                           # contact | distribution_list
      batch_size: 100
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.paths import ConfigPath
from syncd.secrets import SecretRef
from syncd.urls import redact_url

log = logging.getLogger(__name__)

VERSIONS = ("2013", "2013_SP1", "2016", "2019")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (no name resolution)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_folder_path(path: str) -> list[str]:
    """The folder names of a path: '/' separates them, '\\/' is a '/' inside a name
    (Exchange allows "Sales/Marketing" as one folder). Blank parts are dropped."""
    parts = re.split(r"(?<!\\)/", path)
    names = [p.replace("\\/", "/").strip() for p in parts]
    return [n for n in names if n]


class OAuthSettings(BaseModel):
    """OAuth 2 client credentials (Exchange Online). Configuration only: Microsoft blocks
    EWS in Exchange Online for new apps since 2026-10 and retires it in 2027-04, so this
    path is not tested against a server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(description="application (client) id")
    tenant_id: str = Field(description="directory (tenant) id")
    client_secret: SecretRef = Field(description="client secret as a secret reference")


class ExchangeConnection(BaseModel):
    """Where and how to reach Exchange Web Services."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        description="EWS URL, e.g. https://mail.example.com/EWS/Exchange.asmx (no autodiscover)"
    )
    username: str | None = Field(
        None, description="NTLM: DOMAIN\\user; Basic: user or user@domain (not for oauth)"
    )
    password: SecretRef | None = Field(None, description="password as a secret reference")
    auth: Literal["ntlm", "basic", "oauth"] = Field("ntlm", description="authentication")
    oauth: OAuthSettings | None = Field(None, description="client credentials for auth: oauth")
    mailbox: str = Field(description="primary SMTP address of the mailbox to write into")
    impersonation: bool = Field(
        False, description="act on `mailbox` with ApplicationImpersonation rights"
    )
    verify: bool = Field(True, description="verify the server's TLS certificate and host name")
    ca_file: ConfigPath | None = Field(
        None, description="PEM file of the CA(s) to trust (relative to the config file)"
    )
    allow_plaintext: bool = Field(
        False, description="allow http:// to a host that is not loopback (sends the password)"
    )
    version: Literal["2013", "2013_SP1", "2016", "2019"] = Field(
        "2016", description="Exchange server version (no version guessing is done)"
    )
    timeout: float = Field(60, gt=0, le=3600, description="HTTP timeout, seconds")
    max_retries: int = Field(
        6, ge=0, le=50, description="retries of a request the server answered ErrorServerBusy"
    )
    max_backoff: float = Field(
        120,
        gt=0,
        le=3600,
        description="longest back-off wait accepted, seconds: a server asking for more "
        "stops the run (the next run goes on) instead of holding the job",
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http"):
            raise ValueError(f"{redact_url(value)!r}: the endpoint must be an https:// URL")
        if not parts.hostname:
            raise ValueError(f"{redact_url(value)!r}: no host name")
        if parts.username or parts.password:
            raise ValueError(f"{redact_url(value)!r}: credentials do not belong in the URL")
        return value

    @field_validator("mailbox")
    @classmethod
    def _check_mailbox(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"{value!r} is not an e-mail address (primary SMTP address)")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> ExchangeConnection:
        if self.auth == "oauth":
            if self.oauth is None:
                raise ValueError("auth: oauth needs an oauth block (client_id, tenant_id, ...)")
            if self.password is not None:
                raise ValueError("auth: oauth takes oauth.client_secret, not password")
        else:
            if not self.username or self.password is None:
                raise ValueError(f"auth: {self.auth} needs username and password")
            if self.oauth is not None:
                raise ValueError(f"an oauth block is only used with auth: oauth, not {self.auth}")
        parts = urlsplit(self.endpoint)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            if not self.allow_plaintext:
                raise ValueError(
                    f"{self.endpoint!r}: http:// would send credentials in clear text; use "
                    "https:// (or allow_plaintext: true, for a lab only)"
                )
            log.warning(
                "Exchange endpoint %s is plain http: credentials travel unencrypted", self.endpoint
            )
        return self

    def describe(self) -> str:
        """Endpoint, user and mailbox, for logs (no secrets)."""
        who = self.username or (self.oauth.client_id if self.oauth else "?")
        return f"{self.endpoint} as {who} ({self.auth}) mailbox {self.mailbox}"


class ExchangeTargetOptions(BaseModel):
    """A job's Exchange target: which folder, what kind of items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: str = Field(
        "Contacts",
        description="folder path: 'Contacts/Company Directory' (first part Contacts = the "
        "mailbox's contacts folder, else relative to the top of the mailbox) or "
        "'public:/Company/Contacts' (public folders)",
    )
    create_folder: bool = Field(True, description="create missing folders of the path")
    kind: Literal["contact", "distribution_list"] = Field(
        "contact", description="what each record becomes"
    )
    batch_size: int = Field(
        100,
        ge=1,
        le=100,
        description="items per EWS request (Exchange's throttling policies favour <= 100)",
    )
    inline_photos: bool = Field(
        True,
        description="send new contacts' photos inside CreateItem (one request per batch); "
        "false: one CreateAttachment per new contact, as Outlook does. A server that "
        "refuses inline photos switches this off by itself for the rest of the run",
    )
    tag_property: str = Field(
        "syncd-key",
        min_length=1,
        max_length=100,
        description="name of the extended property (syncd's own property set) holding the "
        "record key; only items carrying it are ever changed or deleted",
    )

    @field_validator("folder")
    @classmethod
    def _check_folder(cls, value: str) -> str:
        rest = value[len("public:") :] if value.startswith("public:") else value
        if not split_folder_path(rest) and not value.startswith("public:"):
            raise ValueError("folder must name at least one folder, e.g. Contacts")
        return value
