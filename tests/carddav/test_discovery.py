"""Discovery, address book creation, connection security and errors, against Radicale."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.connectors.carddav import CONNECTOR, CardDavConnection, CardDavTargetOptions
from syncd.errors import ConnectionFailed, TargetError
from tests.carddav.conftest import create, ok
from tests.servers.ports import free_port
from tests.servers.radicale import Radicale

pytestmark = pytest.mark.radicale

MKCOL = (
    '<?xml version="1.0"?><d:mkcol xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
    "<d:set><d:prop><d:resourcetype><d:collection/><c:addressbook/></d:resourcetype>"
    "<d:displayname>{name}</d:displayname></d:prop></d:set></d:mkcol>"
)


def _propfind(server, path):
    with server.client() as c:
        return c.request(
            "PROPFIND",
            path,
            headers={"Depth": "0"},
            content='<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>',
        )


def test_connector_spec():
    assert CONNECTOR.name == "carddav"
    assert CONNECTOR.target_model is CardDavTargetOptions
    assert CONNECTOR.source_class is None


def test_discovery_from_server_root_creates_the_address_book(
    make_target, radicale_server, carddav_book
):
    assert _propfind(radicale_server, f"/alice/{carddav_book}/").status_code == 404
    target = make_target(display_name="Company directory")
    assert target.book == f"{radicale_server.url}alice/{carddav_book}/"
    # /.well-known/carddav redirect, root, principal... then MKCOL and the listing
    assert target.stats["MKCOL"] == 1
    resp = _propfind(radicale_server, f"/alice/{carddav_book}/")
    assert resp.status_code == 207
    assert "addressbook" in resp.text and "Company directory" in resp.text
    ok(target.apply([create("root-1", fn="Root One")]))
    # a second target finds the same book by its display name, without creating anything
    again = make_target(addressbook="Company directory")
    assert again.book == target.book and "MKCOL" not in again.stats
    assert list(again.etags) == ["syncd-root-1.vcf"]


def test_discovery_from_principal_and_from_the_book_url(make_target, radicale_server, carddav_book):
    first = make_target(url=f"{radicale_server.url}alice/")
    assert first.book.endswith(f"/alice/{carddav_book}/")
    direct = make_target(url=first.book, addressbook=None)
    assert direct.book == first.book
    # the URL is an address book but the job names another one: refused
    with pytest.raises(TargetError, match="address book"):
        make_target(url=first.book, addressbook="something-else")


def test_address_book_by_path_and_by_display_name(make_target, radicale_server, carddav_book):
    with radicale_server.client() as c:
        resp = c.request(
            "MKCOL", f"/alice/{carddav_book}-x/", content=MKCOL.format(name="Sales people")
        )
        assert resp.status_code == 201
    by_name = make_target(addressbook="Sales people")
    assert by_name.book.endswith(f"/alice/{carddav_book}-x/")
    assert "MKCOL" not in by_name.stats
    by_path = make_target(addressbook=f"/alice/{carddav_book}-x/")
    assert by_path.book == by_name.book
    created = make_target(addressbook=f"/alice/{carddav_book}-y")
    assert created.book.endswith(f"/alice/{carddav_book}-y/") and created.stats["MKCOL"] == 1


def test_missing_book_without_create_and_url_not_a_book(make_target, radicale_server):
    with pytest.raises(TargetError, match="create: false"):
        make_target(addressbook="nope-not-here", create=False)
    assert _propfind(radicale_server, "/alice/nope-not-here/").status_code == 404
    with pytest.raises(TargetError, match="not an address book"):
        make_target(addressbook=None)


def test_check_for_doctor(make_target):
    target = make_target(open=False)
    checks = target.check()
    assert [c.ok for c in checks] == [True, True]
    assert "created on the first run" in checks[1].detail
    target.open()
    ok(target.apply([create("doc-1", fn="Doc")]))
    checks = target.check()
    assert "1 cards, 1 written by syncd" in checks[1].detail


def test_wrong_password(make_target, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("Not-The-Password-42")
    with pytest.raises(ConnectionFailed) as err:
        make_target(connection={"password": {"file": str(bad)}})
    msg = str(err.value)
    assert "401" in msg and "alice" in msg and "Not-The-Password-42" not in msg
    checks = make_target(open=False, connection={"password": {"file": str(bad)}}).check()
    assert not checks[0].ok and "401" in checks[0].detail


def test_server_down(make_target):
    port = free_port()
    with pytest.raises(ConnectionFailed, match="connection refused"):
        make_target(url=f"http://127.0.0.1:{port}/")


def test_server_goes_down_mid_run(tmp_path, password_file):
    from syncd.connectors.carddav import CardDavTarget

    with Radicale(tmp_path / "r") as server:
        (tmp_path / "pw").write_text(server.password)
        conn = CardDavConnection.model_validate(
            {
                "url": server.url,
                "username": server.user,
                "password": {"file": str(tmp_path / "pw")},
                "timeout": 3,
            }
        )
        target = CardDavTarget(conn, CardDavTargetOptions(addressbook="mid-run"), job="test")
        target.open()
        ok(target.apply([create("m-1", fn="Before")]))
        server.stop()
        with pytest.raises(TargetError, match=r"CardDAV server http://127\.0\.0\.1"):
            target.apply([create("m-2", fn="After")])
        target.close()


def test_plaintext_refused_for_remote_hosts():
    base = {"username": "u", "password": {"env": "X"}}
    with pytest.raises(ValidationError, match="allow_plaintext"):
        CardDavConnection.model_validate({"url": "http://dav.example.com/", **base})
    CardDavConnection.model_validate(
        {"url": "http://dav.example.com/", "allow_plaintext": True, **base}
    )
    CardDavConnection.model_validate({"url": "https://dav.example.com/", **base})
    CardDavConnection.model_validate({"url": "http://localhost:5232/", **base})
    with pytest.raises(ValidationError, match="credentials do not belong"):
        CardDavConnection.model_validate({"url": "https://u:p@dav.example.com/"})
    with pytest.raises(ValidationError, match="secrets may not"):
        CardDavConnection.model_validate({"url": "https://x/", "username": "u", "password": "p"})
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        CardDavTargetOptions.model_validate({"addressbook": "../other/"})


def test_tls_verified_with_private_ca(tmp_path):
    from syncd.connectors.carddav import CardDavTarget

    with Radicale(tmp_path / "r", tls=True) as server:
        (tmp_path / "pw").write_text(server.password)
        common = {
            "url": server.url,
            "username": server.user,
            "password": {"file": str(tmp_path / "pw")},
            "timeout": 5,
        }
        opts = CardDavTargetOptions(addressbook="tls-book")
        untrusted = CardDavTarget(CardDavConnection.model_validate(common), opts, job="t")
        with pytest.raises(ConnectionFailed, match="TLS certificate not accepted"):
            untrusted.open()
        trusted = CardDavTarget(
            CardDavConnection.model_validate({**common, "ca_file": server.ca_file}),
            opts,
            job="t",
        )
        trusted.open()
        ok(trusted.apply([create("tls-1", fn="Over TLS")]))
        trusted.close()


def test_redirect_to_plaintext_remote_host_is_refused(make_target):
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_PROPFIND(self):
            self.send_response(301)
            self.send_header("Location", "http://dav.example.com/dav/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionFailed, match=r"refusing plain http:// to dav\.example\.com"):
            make_target(url=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()


def test_no_rights_on_someone_elses_book(make_target, radicale_server, tmp_path):
    alice_book = make_target().book
    radicale_server.add_user("bob", "bob-Pa55")
    (tmp_path / "bob").write_text("bob-Pa55")
    with pytest.raises(TargetError, match="403"):
        make_target(
            url=alice_book,
            addressbook=None,
            connection={"username": "bob", "password": {"file": str(tmp_path / "bob")}},
        )


def test_config_errors_point_at_the_file(tmp_path):
    from syncd.config import load_config
    from syncd.errors import ConfigError

    (tmp_path / "m.yaml").write_text("version: 1\nkey: entryUUID\nfields:\n  fn: cn\n")

    def problems(dav_url: str, target: str) -> str:
        path = tmp_path / "syncd.yaml"
        path.write_text(
            "version: 1\n"
            "connections:\n"
            "  dir: {type: ldap, url: 'ldap://127.0.0.1:1'}\n"
            "  dav:\n"
            "    type: carddav\n"
            f"    url: {dav_url}\n"
            "    username: u\n"
            "    password: {env: DAV_PW}\n"
            "jobs:\n"
            "  people:\n"
            "    source: {connection: dir, base: 'dc=x'}\n"
            "    mapping: m.yaml\n"
            f"    target: {target}\n"
        )
        with pytest.raises(ConfigError) as err:
            load_config(path)
        return str(err.value)

    text = problems("http://dav.example.com/", "{connection: dav, addressbook: Staff}")
    assert "syncd.yaml:4: connections.dav" in text and "allow_plaintext" in text
    text = problems("https://dav.example.com/", "{connection: dav, vcard_version: '5.0'}")
    assert "syncd.yaml:" in text and "vcard_version" in text
