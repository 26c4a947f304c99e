"""Config models of the Microsoft Graph connector (pydantic v2, ``extra="forbid"``).

``GraphConnection`` is a ``connections.NAME`` block with ``type: graph``::

    connections:
      m365:
        type: graph
        tenant_id: 0f3c6a2e-1111-2222-3333-444455556666
        client_id: 7d1f0c84-aaaa-bbbb-cccc-ddddeeeeffff
        client_secret: {env: SYNCD_GRAPH_SECRET}     # or a certificate:
        # certificate: {private_key: {file: /etc/syncd/graph.key}, certificate_file: graph.pem}

``GraphTargetOptions`` is the rest of a job's ``target`` block::

    target:
      connection: m365
      mailbox: addressbook@example.com      # or mailboxes: [...] or group: staff@example.com
      folder: Company Directory
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.paths import ConfigPath
from syncd.secrets import SecretRef

_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")


class CertificateCredential(BaseModel):
    """A certificate registered on the app: its private key (secret) and either the
    public certificate (msal computes the SHA-256 thumbprint) or a SHA-1 thumbprint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    private_key: SecretRef = Field(description="PEM private key, as a secret reference")
    certificate_file: ConfigPath | None = Field(
        None, description="PEM file of the public certificate registered on the app"
    )
    thumbprint: str | None = Field(
        None, description="SHA-1 thumbprint (40 hex digits), when no certificate_file is given"
    )
    passphrase: SecretRef | None = Field(None, description="passphrase of an encrypted key")

    @model_validator(mode="after")
    def _one_way(self) -> CertificateCredential:
        if (self.certificate_file is None) == (self.thumbprint is None):
            raise ValueError("certificate needs exactly one of certificate_file, thumbprint")
        if self.thumbprint is not None and not _THUMBPRINT.match(self.thumbprint):
            raise ValueError("thumbprint must be 40 hex digits (SHA-1)")
        return self


def _https(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r}: {what} must be an https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"{value!r}: credentials do not belong in the URL")
    return value.rstrip("/")


class GraphConnection(BaseModel):
    """An app registration with application permission Contacts.ReadWrite (app-only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(description="directory (tenant) id or verified domain")
    client_id: str = Field(description="application (client) id of the app registration")
    client_secret: SecretRef | None = Field(None, description="client secret (secret reference)")
    certificate: CertificateCredential | None = Field(
        None, description="certificate credential instead of a client secret"
    )
    authority_url: str = Field(
        "https://login.microsoftonline.com",
        description="sign-in host (national clouds: https://login.microsoftonline.us, ...)",
    )
    graph_url: str = Field(
        "https://graph.microsoft.com/v1.0", description="Graph API root, with its version"
    )
    ca_file: ConfigPath | None = Field(
        None, description="PEM file of CA(s) to trust for both hosts (default: system store)"
    )
    timeout: float = Field(60, gt=0, le=3600, description="HTTP timeout, seconds")
    max_retries: int = Field(
        6, ge=0, le=50, description="retries of a request answered 429/503/504 (throttling)"
    )
    max_backoff: float = Field(
        120,
        gt=0,
        le=3600,
        description="longest wait accepted, seconds: a server asking for more fails the "
        "request (the next run repeats it) instead of holding the job",
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=4,
        description="requests at once per mailbox (Exchange Online allows 4 per app)",
    )
    workers: int = Field(8, ge=1, le=64, description="mailboxes written at once (fan-out)")

    @field_validator("authority_url")
    @classmethod
    def _check_authority(cls, value: str) -> str:
        return _https(value, "authority_url")

    @field_validator("graph_url")
    @classmethod
    def _check_graph(cls, value: str) -> str:
        return _https(value, "graph_url")

    @model_validator(mode="after")
    def _one_credential(self) -> GraphConnection:
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("give exactly one of client_secret, certificate")
        return self

    def describe(self) -> str:
        """Tenant, app and credential kind, for logs (no secrets)."""
        how = "secret" if self.client_secret is not None else "certificate"
        return f"Graph {self.graph_url} tenant {self.tenant_id} app {self.client_id} ({how})"


class GraphTargetOptions(BaseModel):
    """Which mailbox(es) and contact folder a job writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mailbox: str | None = Field(None, description="one mailbox (UPN/SMTP address or user id)")
    mailboxes: list[str] | None = Field(
        None, description="the same folder in each of these mailboxes"
    )
    group: str | None = Field(
        None,
        description="the same folder in the mailbox of every user member of this group "
        "(group mail address or object id); members are read at every run",
    )
    folder: str = Field(
        "Company Directory",
        min_length=1,
        max_length=255,
        description="display name of a contact folder under the mailbox's Contacts folder",
    )
    create_folder: bool = Field(True, description="create the folder where it is missing")
    tag_property: str = Field(
        "syncd-key",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="name of the extended property (syncd's property set) holding the "
        "record key; only contacts carrying it are ever changed or deleted",
    )
    track_changes: bool = Field(
        True,
        description="delta query per mailbox at each run: contacts edited or deleted by "
        "hand are written again",
    )
    batch_size: int = Field(20, ge=1, le=20, description="requests per JSON $batch (Graph: 20)")
    page_size: int = Field(1000, ge=10, le=1000, description="contacts per listing page")

    @model_validator(mode="after")
    def _one_scope(self) -> GraphTargetOptions:
        given = [n for n in ("mailbox", "mailboxes", "group") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of mailbox, mailboxes, group")
        return self
