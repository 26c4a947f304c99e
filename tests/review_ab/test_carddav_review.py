"""Adversarial review of the CardDAV target: real Radicale where a real server can show
the behaviour, a hostile stand-in (tests/review_ab/hostile_dav.py) where only a hostile
or odd server would behave that way."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.carddav import CardDavConnection, CardDavTarget, CardDavTargetOptions
from syncd.errors import ConnectionFailed
from tests.review_ab.hostile_dav import BOOK_PROPS, HostileDav, multistatus

PASSWORD = "Very-Secret-pw-42"


def _target(tmp_path: Path, url: str, **options) -> CardDavTarget:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    conn = CardDavConnection.model_validate(
        {"url": url, "username": "syncd", "password": {"file": str(pw)}, "timeout": 5}
    )
    return CardDavTarget(conn, CardDavTargetOptions.model_validate(options), job="review")


@pytest.mark.parametrize("how", ["redirect", "home-set"])
def test_credentials_never_go_to_another_host(tmp_path, how):
    """The configured server (localhost) sends the client to another host (127.0.0.1),
    by a 3xx on /.well-known/carddav or by an absolute addressbook-home-set href. That
    host must get no request carrying the password: the client stops with one line."""
    other = HostileDav(
        lambda method, path: (
            207,
            {"Content-Type": "application/xml"},
            multistatus(path, BOOK_PROPS),
        )
    )
    elsewhere = f"http://127.0.0.1:{other.port}/home/"

    def configured(method: str, path: str):
        if path.startswith("/.well-known/carddav"):
            if how == "redirect":
                return 301, {"Location": elsewhere}, b""
            return 404, {}, b""
        home = f"<c:addressbook-home-set><d:href>{elsewhere}</d:href></c:addressbook-home-set>"
        return 207, {"Content-Type": "application/xml"}, multistatus(path, home)

    server = HostileDav(configured)
    target = _target(tmp_path, f"http://localhost:{server.port}/", addressbook="book")
    try:
        with pytest.raises(ConnectionFailed) as info:
            target.open()
        assert "127.0.0.1" in str(info.value)
        assert PASSWORD not in str(info.value)
        assert [auth for _m, _p, auth in other.seen if auth] == []
    finally:
        target.close()
        server.stop()
        other.stop()


def test_same_site_rule():
    from connectors.carddav.dav import same_site

    assert same_site("p42-contacts.icloud.com", "contacts.icloud.com")  # iCloud's home set
    assert same_site("DAV.example.com", "dav.example.com")
    assert same_site("x.example.com", "example.com")
    assert not same_site("evil.com", "dav.example.com")
    assert not same_site("example.com.evil.net", "dav.example.com")
    assert not same_site("127.0.0.2", "127.0.0.1")
    assert not same_site("localhost", "127.0.0.1")
