"""Fixtures: one private Radicale per test session (``radicale_server``), a fresh address
book name per test (``carddav_book``), a Radicale of its own for tests that stop it
(``radicale_private``), and the CardDAV harnesses of the target contract suite.

Isolation is by address book: every test gets a unique name, so the session's Radicale
is never restarted. Read-back helpers use plain httpx, never the code under test.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import vobject
from lxml import etree

from tests.contract.harness import BAD_PASSWORD, Stored, TargetHarness, register
from tests.servers.ports import free_port
from tests.servers.radicale import Radicale


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory):
    """The session's Radicale: ``.url``, ``.user``, ``.password``, ``.client()``."""
    with Radicale(tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.fixture
def radicale_private(tmp_path):
    """A Radicale for this test alone (may be stopped and restarted)."""
    with Radicale(tmp_path / "radicale") as server:
        yield server


@pytest.fixture
def carddav_book() -> str:
    """A unique address book name for this test (created by whoever uses it first)."""
    return f"book-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def password_file(tmp_path, radicale_server) -> Path:
    """A secret file holding the session user's password (for SecretRef {file: ...})."""
    path = tmp_path / "carddav-password"
    path.write_text(radicale_server.password + "\n")
    return path


# ---------------------------------------------------------------- reading back


def _propfind_hrefs(client: httpx.Client, path: str) -> list[str]:
    body = (
        '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
    )
    resp = client.request("PROPFIND", path, headers={"Depth": "1"}, content=body)
    if resp.status_code == 404:
        return []
    assert resp.status_code == 207, resp.text
    root = etree.fromstring(resp.content)
    hrefs = [h.text for h in root.iter("{DAV:}href")]
    base = unquote(urlsplit(path).path).rstrip("/")
    return [h for h in hrefs if unquote(h).rstrip("/") != base]


def read_cards(server: Radicale, book_path: str) -> dict[str, str]:
    """{href: vCard text} of every card in an address book, by PROPFIND + GET."""
    out = {}
    with server.client() as c:
        for href in _propfind_hrefs(c, book_path):
            resp = c.get(href)
            assert resp.status_code == 200, (href, resp.status_code)
            out[href] = resp.text
    return out


def book_path(server: Radicale, name: str) -> str:
    return f"/{server.user}/{name}/"


# ---------------------------------------------------------------- contract harness


class _CardDavHarness(TargetHarness):
    capabilities = frozenset(
        {"credentials", "down", "delete", "multi_order", "bad_record", "read_back"}
    )
    version = "3.0"

    def __init__(self, server: Radicale, book: str, secret_dir: Path):
        super().__init__()
        self.server = server
        self.book = book
        self.secret_dir = secret_dir
        secret_dir.mkdir(parents=True, exist_ok=True)
        (secret_dir / "good").write_text(server.password)
        (secret_dir / "bad").write_text(BAD_PASSWORD)

    def _target(self, url: str, password_file: str) -> Any:
        from syncd.connectors.carddav import CardDavConnection, CardDavTarget, CardDavTargetOptions

        conn = CardDavConnection.model_validate(
            {
                "url": url,
                "username": self.server.user,
                "password": {"file": password_file},
                "timeout": 5,
            }
        )
        opts = CardDavTargetOptions.model_validate(
            {"addressbook": self.book, "vcard_version": self.version}
        )
        return CardDavTarget(conn, opts, job="contract")

    def make_target(self, *, soft_delete: bool = False):
        return self._target(self.server.url, str(self.secret_dir / "good"))

    def make_bad_credentials_target(self):
        return self._target(self.server.url, str(self.secret_dir / "bad"))

    def make_down_target(self):
        return self._target(f"http://127.0.0.1:{free_port()}/", str(self.secret_dir / "good"))

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"fn": text, "email": list(multi), "note": f"contract {key}"}

    def bad_fields(self, key: str) -> dict[str, Any]:
        # Refused by the target before the server sees it: the photo is not an image.
        return {"fn": "Bad", "photo": b"this is not an image"}

    def stored(self) -> list[Stored]:
        items = []
        for text in read_cards(self.server, book_path(self.server, self.book)).values():
            card = vobject.readOne(text)
            emails = [e.value for e in card.contents.get("email", [])]
            items.append(Stored(card.uid.value, card.fn.value, emails))
        return items


@register
class CardDavHarness(_CardDavHarness):
    """CardDavTarget writing vCard 3.0 (the default) into Radicale."""

    name = "carddav"


@register
class CardDavV4Harness(_CardDavHarness):
    """The same with vCard 4.0."""

    name = "carddav-v4"
    version = "4.0"


@pytest.fixture
def harness_carddav(radicale_server, carddav_book, tmp_path):
    h = CardDavHarness(radicale_server, carddav_book, tmp_path / "secrets")
    yield h
    h.close()


@pytest.fixture
def harness_carddav_v4(radicale_server, carddav_book, tmp_path):
    h = CardDavV4Harness(radicale_server, carddav_book, tmp_path / "secrets")
    yield h
    h.close()
