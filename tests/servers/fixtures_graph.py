"""Fixtures for the Graph target: the Graph emulator (HTTPS with a private CA) and the
contract-suite harness.

* ``graph_tls`` (session): a CA and a 127.0.0.1 server certificate (openssl).
* ``graph_server``: a started :class:`~tests.servers.graph_emulator.GraphEmulator` with
  one mailbox ``book@contoso.test`` (fresh per test).
* ``make_graph_target``: builds a GraphTarget against it (back-offs recorded, not slept).
* ``harness_graph``: the contract suite's harness.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.contract.harness import BAD_PASSWORD, Stored, TargetHarness, register
from tests.servers.graph_emulator import GraphEmulator
from tests.servers.ports import free_port
from tests.servers.tls import make_ca_and_cert

MAILBOX = "book@contoso.test"


def write_secret(directory: Path, name: str, value: str) -> dict[str, str]:
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return {"file": str(path)}


def make_client_certificate(directory: Path) -> tuple[str, str]:
    """A private key and self-signed certificate (PEM) for certificate sign-in."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd graph app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def graph_connection(
    emu: GraphEmulator, secret_dir: Path, *, secret: str | None = None, **extra: Any
) -> Any:
    from syncd.connectors.graph import GraphConnection

    data: dict[str, Any] = {
        "tenant_id": emu.tenant,
        "client_id": emu.client_id,
        "authority_url": emu.authority_url,
        "graph_url": emu.graph_url,
        "ca_file": emu.tls["ca"],
        "timeout": 5,
    }
    if "certificate" not in extra:
        value = emu.client_secret if secret is None else secret
        data["client_secret"] = write_secret(secret_dir, f"graph-{abs(hash(value))}", value)
    data.update(extra)
    return GraphConnection.model_validate(data)


def graph_target(
    emu: GraphEmulator,
    secret_dir: Path,
    *,
    connection: dict[str, Any] | None = None,
    secret: str | None = None,
    job: str = "test",
    **options: Any,
) -> Any:
    """A GraphTarget (not opened); back-off sleeps go to ``target.slept``."""
    from syncd.connectors.graph import GraphTarget, GraphTargetOptions

    conn = graph_connection(emu, secret_dir, secret=secret, **(connection or {}))
    if not {"mailbox", "mailboxes", "group"} & set(options):
        options["mailbox"] = MAILBOX
    opts = GraphTargetOptions.model_validate({"folder": "Company Directory", **options})
    target = GraphTarget(conn, opts, job=job)
    target.slept = []  # type: ignore[attr-defined]
    target.sleep = target.slept.append
    return target


@pytest.fixture(scope="session")
def graph_tls(tmp_path_factory):
    return make_ca_and_cert(tmp_path_factory.mktemp("graph-tls"), hosts=["127.0.0.1"])


@pytest.fixture
def graph_server(graph_tls):
    emu = GraphEmulator(graph_tls).start()
    emu.add_mailbox(MAILBOX)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_graph_target(graph_server, tmp_path):
    def make(**kwargs: Any) -> Any:
        return graph_target(graph_server, tmp_path, **kwargs)

    return make


@register
class GraphHarness(TargetHarness):
    """Contacts in ``Contract`` of one mailbox: text = displayName, multi = categories
    (order kept, duplicates merged)."""

    name = "graph"
    capabilities = frozenset({"credentials", "down", "delete", "bad_record", "multi_order"})
    apply_timeout = 20.0

    def __init__(self, emu: GraphEmulator, secret_dir: Path):
        super().__init__()
        self.emu = emu
        self.secret_dir = secret_dir
        self.folder = "Contract"

    def make_target(self, *, soft_delete: bool = False) -> Any:
        return graph_target(self.emu, self.secret_dir, folder=self.folder)

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"display_name": text, "categories": list(multi)}

    def bad_fields(self, key: str) -> dict[str, Any]:
        return {"display_name": None, "categories": ["x"]}  # a contact needs a name

    def stored(self) -> list[Stored]:
        out = []
        for c in self.emu.contacts(MAILBOX, self.folder):
            key = c["ext"].get("syncd-key")
            if key is not None:
                out.append(Stored(key, c.get("displayName") or "", list(c.get("categories") or [])))
        return out

    def make_bad_credentials_target(self) -> Any:
        return graph_target(self.emu, self.secret_dir, folder=self.folder, secret=BAD_PASSWORD)

    def make_down_target(self) -> Any:
        url = f"https://127.0.0.1:{free_port()}"
        return graph_target(
            self.emu,
            self.secret_dir,
            folder=self.folder,
            connection={"authority_url": url, "graph_url": f"{url}/v1.0"},
        )


@pytest.fixture
def harness_graph(graph_server, tmp_path):
    h = GraphHarness(graph_server, tmp_path)
    yield h
    h.close()
