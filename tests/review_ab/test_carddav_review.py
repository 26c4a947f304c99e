"""Adversarial review of the CardDAV target: real Radicale where a real server can show
the behaviour, a hostile stand-in (tests/review_ab/hostile_dav.py) where only a hostile
or odd server would behave that way."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.connectors.carddav import CardDavConnection, CardDavTarget, CardDavTargetOptions
from syncd.errors import ConnectionFailed
from tests.review_ab.hostile_dav import BOOK_PROPS, HostileDav, multistatus
from tests.review_ab.rewriting_proxy import RewritingProxy

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
    from syncd.connectors.carddav.dav import same_site

    assert same_site("p42-contacts.icloud.com", "contacts.icloud.com")  # iCloud's home set
    assert same_site("DAV.example.com", "dav.example.com")
    assert same_site("x.example.com", "example.com")
    assert not same_site("evil.com", "dav.example.com")
    assert not same_site("example.com.evil.net", "dav.example.com")
    assert not same_site("127.0.0.2", "127.0.0.1")
    assert not same_site("localhost", "127.0.0.1")
    assert not same_site("evil.co.uk", "carddav.co.uk")  # co.uk is a public suffix
    assert same_site("p1.example.co.uk", "dav.example.co.uk")


def _radicale_target(server, tmp_path: Path, url: str, book: str) -> CardDavTarget:
    pw = tmp_path / "radicale-pw"
    pw.write_text(server.password)
    conn = CardDavConnection.model_validate(
        {"url": url, "username": server.user, "password": {"file": str(pw)}, "timeout": 5}
    )
    opts = CardDavTargetOptions.model_validate({"addressbook": book})
    return CardDavTarget(conn, opts, job="review")


@pytest.mark.radicale
def test_server_that_rewrites_cards_is_not_an_external_edit(
    radicale_server, carddav_book, tmp_path, caplog
):
    """A server that adds to every card it stores and so sends no ETag (sabre/dav,
    iCloud): the next update of that card is not 'changed outside syncd' (that warning
    would come back on every change, forever), while a real edit still is."""
    from syncd.contracts import Action, ActionKind

    proxy = RewritingProxy(radicale_server.url)
    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c01"
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        made = t.apply([Action(ActionKind.CREATE, "s1", key, fields={"fn": "Ann"})])
        t.close()
        assert made[0].ok, made[0].error

        caplog.set_level("WARNING")
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        upd = Action(
            ActionKind.UPDATE,
            "s1",
            key,
            fields={"fn": "Ann B"},
            changed=("fn",),
            target_id=made[0].target_id,
        )
        res = t.apply([upd])
        t.close()
        assert res[0].ok, res[0].error
        assert res[0].detail is None
        assert "changed outside syncd" not in caplog.text

        # A person edits the card (straight on Radicale): still noticed and reported.
        with radicale_server.client() as c:
            href = res[0].target_id.split(" ")[0]
            text = c.get(href).text.replace("FN:Ann B", "FN:Edited by hand")
            assert c.put(href, content=text.encode()).status_code in (201, 204)
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        upd2 = Action(
            ActionKind.UPDATE,
            "s1",
            key,
            fields={"fn": "Ann C"},
            changed=("fn",),
            target_id=res[0].target_id,
        )
        res2 = t.apply([upd2])
        t.close()
        assert res2[0].ok, res2[0].error
        assert res2[0].detail == "overwrote a change made outside syncd"
    finally:
        proxy.stop()


@pytest.mark.radicale
def test_multiget_with_per_href_errors_is_not_already_gone(radicale_server, carddav_book, tmp_path):
    """addressbook-multiget answers 207 but the card's own status is 500: the card was
    NOT found missing. A delete must not report 'already gone' (and leave a departed
    person's card in the address book forever, forgotten by the state)."""
    from syncd.contracts import Action, ActionKind

    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c02"
    t = _radicale_target(radicale_server, tmp_path, radicale_server.url, carddav_book)
    t.open()
    made = t.apply([Action(ActionKind.CREATE, "s2", key, fields={"fn": "Bob"})])
    t.close()
    assert made[0].ok, made[0].error
    href = made[0].target_id.split(" ")[0]
    with radicale_server.client() as c:  # someone edits it: the ETag is not syncd's
        text = c.get(href).text.replace("FN:Bob", "FN:Bobby")
        assert c.put(href, content=text.encode()).status_code in (201, 204)

    proxy = RewritingProxy(radicale_server.url, rewrite_puts=False, multiget_500=True)
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        res = t.apply([Action(ActionKind.DELETE, "s2", key, target_id=made[0].target_id)])
        t.close()
    finally:
        proxy.stop()
    assert res[0].ok, res[0].error
    assert res[0].detail != "already gone"
    with radicale_server.client() as c:
        assert c.get(href).status_code == 404


@pytest.mark.radicale
@pytest.mark.parametrize("key", ["../../../etc/passwd", "a%2Fb", "A/B?c#d", "CN=x,OU=y", " "])
def test_hostile_keys_stay_inside_the_book(radicale_server, carddav_book, tmp_path, key):
    from syncd.contracts import Action, ActionKind

    t = _radicale_target(radicale_server, tmp_path, radicale_server.url, carddav_book)
    t.open()
    made = t.apply([Action(ActionKind.CREATE, "s", key, fields={"fn": "Eve"})])
    assert made[0].ok, made[0].error
    href = made[0].target_id.split(" ")[0]
    assert href.startswith(t.book_path) and "/" not in href[len(t.book_path) :]
    upd = t.apply(
        [Action(ActionKind.UPDATE, "s", key, {"fn": "Eve 2"}, ("fn",), made[0].target_id)]
    )
    assert upd[0].ok and upd[0].target_id.split(" ")[0] == href
    gone = t.apply([Action(ActionKind.DELETE, "s", key, target_id=upd[0].target_id)])
    t.close()
    assert gone[0].ok and gone[0].detail != "already gone"
    with radicale_server.client() as c:
        assert c.get(href).status_code == 404
    home = radicale_server.storage
    stray = [p for p in home.rglob("*") if "passwd" in p.name or p.name == "b.vcf"]
    assert stray == []


def test_listing_10k_cards_in_truncated_pages(tmp_path):
    """A server lists a 10 000-card book by sync-collection in pages: 507 on the
    collection plus a token means 'more' (RFC 6578 3.6). Every card is listed once,
    the rounds follow the tokens, and it takes well under a few seconds."""
    import time

    book = "/dav/u/book/"
    total, page = 10_000, 4_000
    tokens: list[str] = []

    def answer(method: str, path: str):
        if method == "PROPFIND":
            return 207, {"Content-Type": "application/xml"}, multistatus(path, BOOK_PROPS)
        start = len(tokens) * page
        tokens.append(f"http://x/token/{len(tokens) + 1}")
        end = min(start + page, total)
        rows = "".join(
            f"<d:response><d:href>{book}card-{n}.vcf</d:href><d:propstat><d:prop>"
            f'<d:getetag>"e{n}"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status>'
            "</d:propstat></d:response>"
            for n in range(start, end)
        )
        more = (
            f"<d:response><d:href>{book}</d:href>"
            "<d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>"
            if end < total
            else ""
        )
        body = (
            '<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">'
            f"{rows}{more}<d:sync-token>{tokens[-1]}</d:sync-token></d:multistatus>"
        )
        return 207, {"Content-Type": "application/xml"}, body.encode()

    server = HostileDav(answer)
    target = _target(tmp_path, f"http://127.0.0.1:{server.port}{book}")
    try:
        began = time.monotonic()
        target.open()
        took = time.monotonic() - began
        assert len(target.etags) == total and target.etags["card-9999.vcf"] == '"e9999"'
        assert len(tokens) == 3 and target.sync_token == tokens[-1]
        assert took < 5, took
    finally:
        target.close()
        server.stop()


@pytest.mark.radicale
def test_delete_is_not_already_gone_when_the_listing_missed_the_card(
    radicale_server, carddav_book, tmp_path
):
    """The listing at open() did not name the card (here: the book configured with a
    '//' that the server normalises away, so its hrefs do not match; likewise any href
    spelling the client does not expect). A delete must check before it answers
    'already gone', else the card stays forever and the state forgets it."""
    from syncd.contracts import Action, ActionKind

    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c03"
    t = _radicale_target(radicale_server, tmp_path, radicale_server.url, carddav_book)
    t.open()
    made = t.apply([Action(ActionKind.CREATE, "s3", key, fields={"fn": "Cy"})])
    user = t.book_path.strip("/").split("/")[0]
    t.close()
    assert made[0].ok, made[0].error
    href = made[0].target_id.split(" ")[0]

    odd = _radicale_target(
        radicale_server, tmp_path, radicale_server.url, f"/{user}//{carddav_book}/"
    )
    odd.open()
    res = odd.apply([Action(ActionKind.DELETE, "s3", key, target_id=None)])
    odd.close()
    assert res[0].ok, res[0].error
    with radicale_server.client() as c:
        assert c.get(href).status_code == 404, res[0].detail


@pytest.mark.radicale
def test_server_dropping_syncd_properties_does_not_orphan_the_card(
    radicale_server, carddav_book, tmp_path
):
    """A server that keeps no unknown X- properties (X-SYNCD-KEY, X-SYNCD-DIGEST gone):
    the card at syncd's own name whose UID is the key is still syncd's. After someone
    edits it, the next update must not fail forever with 'a card syncd did not write'."""
    from syncd.contracts import Action, ActionKind

    proxy = RewritingProxy(radicale_server.url, drop=("X-SYNCD-KEY", "X-SYNCD-DIGEST"))
    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c04"
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        made = t.apply([Action(ActionKind.CREATE, "s4", key, fields={"fn": "Dee"})])
        t.close()
        assert made[0].ok, made[0].error
        href = made[0].target_id.split(" ")[0]
        with radicale_server.client() as c:
            text = c.get(href).text
            assert "X-SYNCD-KEY" not in text
            assert c.put(href, content=text.replace("FN:Dee", "FN:Deedee").encode()).is_success
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        upd = Action(ActionKind.UPDATE, "s4", key, {"fn": "Dee 2"}, ("fn",), made[0].target_id)
        res = t.apply([upd])
        t.close()
        assert res[0].ok, res[0].error
        with radicale_server.client() as c:
            assert "FN:Dee 2" in c.get(href).text
    finally:
        proxy.stop()


@pytest.mark.parametrize("ca", ["missing", "not-pem", "directory"])
def test_unusable_ca_file_is_one_clear_line(tmp_path, ca):
    """A ca_file that is missing, not PEM or a directory: ConnectionFailed naming it
    (open) and a failed doctor line (check), not an OSError/SSLError traceback."""
    path = {"missing": tmp_path / "nope.pem", "not-pem": tmp_path / "x.pem", "directory": tmp_path}[
        ca
    ]
    if ca == "not-pem":
        path.write_text("not a certificate")
    conn = CardDavConnection.model_validate({"url": "https://127.0.0.1:9/", "ca_file": str(path)})
    target = CardDavTarget(conn, CardDavTargetOptions.model_validate({"addressbook": "x"}), job="j")
    with pytest.raises(ConnectionFailed, match="ca_file"):
        target.open()
    checks = target.check()
    assert [c.ok for c in checks] == [False] and "ca_file" in checks[0].detail


@pytest.mark.parametrize("url", ["https://dav.bücher.de/", "https://DAV.xn--bcher-kva.de/"])
def test_guard_accepts_the_configured_host_however_it_is_spelled(url):
    import httpx

    from syncd.connectors.carddav.dav import DavClient

    conn = CardDavConnection.model_validate({"url": url})
    client = DavClient(conn)
    try:
        client._guard(httpx.Request("PROPFIND", url + "dav/"))  # no ConnectionFailed
        with pytest.raises(ConnectionFailed):
            client._guard(httpx.Request("PROPFIND", "https://other.example/dav/"))
    finally:
        client.close()


def test_verify_off_is_said_out_loud(caplog):
    from syncd.connectors.carddav.dav import DavClient

    conn = CardDavConnection.model_validate({"url": "https://dav.example.com/", "verify": False})
    DavClient(conn).close()
    assert "verification is OFF" in caplog.text
    caplog.clear()
    DavClient(CardDavConnection.model_validate({"url": "https://dav.example.com/"})).close()
    assert "verification" not in caplog.text


@pytest.mark.radicale
def test_long_unicode_values_round_trip(radicale_server, carddav_book, tmp_path):
    import vobject

    from syncd.contracts import Action, ActionKind

    note = "Zeile ü € 𝄞 ; , \\ :\n" * 3000
    name = "Zoë 𝄞 " + "x" * 300
    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c05"
    t = _radicale_target(radicale_server, tmp_path, radicale_server.url, carddav_book)
    t.open()
    res = t.apply(
        [
            Action(
                ActionKind.CREATE,
                "s5",
                key,
                fields={"fn": name, "note": note, "tel_mobile": ["+41 1", "+41 2"]},
            )
        ]
    )
    t.close()
    assert res[0].ok, res[0].error
    with radicale_server.client() as c:
        card = vobject.readOne(c.get(res[0].target_id.split(" ")[0]).text)
    assert card.fn.value == name
    assert card.note.value == note
    assert sorted(t.value for t in card.contents["tel"]) == ["+41 1", "+41 2"]


@pytest.mark.radicale
def test_rate_limited_puts_are_retried_after_retry_after(radicale_server, carddav_book, tmp_path):
    """iCloud, Fastmail or a proxy answer a burst with 429 + Retry-After: the cards are
    written after the wait, not failed."""
    from syncd.contracts import Action, ActionKind

    proxy = RewritingProxy(radicale_server.url, rewrite_puts=False, busy_puts=3)
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        waits: list[float] = []
        t.client.sleep = waits.append
        keys = [f"0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1d0{n}" for n in range(3)]
        res = t.apply([Action(ActionKind.CREATE, k, k, fields={"fn": k}) for k in keys])
        t.close()
    finally:
        proxy.stop()
    assert [r.ok for r in res] == [True, True, True], [r.error for r in res]
    assert waits == [1.0, 1.0, 1.0]


@pytest.mark.radicale
def test_locked_puts_are_retried_with_back_off(radicale_server, carddav_book, tmp_path):
    """Xandikos answers parallel PUTs into one collection with 423 Locked (no
    Retry-After): the cards are written after growing pauses, not failed."""
    from syncd.contracts import Action, ActionKind

    proxy = RewritingProxy(radicale_server.url, rewrite_puts=False, locked_puts=3)
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        waits: list[float] = []
        t.client.sleep = waits.append
        key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1e01"
        res = t.apply([Action(ActionKind.CREATE, key, key, fields={"fn": "Locked once"})])
        t.close()
    finally:
        proxy.stop()
    assert res[0].ok, res[0].error
    assert waits == [0.5, 1.0, 2.0]
    with radicale_server.client() as c:
        assert "Locked once" in c.get(res[0].target_id.split(" ")[0]).text


@pytest.mark.radicale
def test_a_collection_locked_for_good_fails_the_card(radicale_server, carddav_book, tmp_path):
    """A lock that never clears fails that card after the bounded retries (retried on
    the next run), it does not hang the run."""
    from syncd.contracts import Action, ActionKind

    proxy = RewritingProxy(radicale_server.url, rewrite_puts=False, locked_puts=100)
    try:
        t = _radicale_target(radicale_server, tmp_path, proxy.url, carddav_book)
        t.open()
        waits: list[float] = []
        t.client.sleep = waits.append
        key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1e02"
        res = t.apply([Action(ActionKind.CREATE, key, key, fields={"fn": "Never"})])
        t.close()
    finally:
        proxy.stop()
    assert not res[0].ok and "423" in (res[0].error or "")
    assert waits == [0.5, 1.0, 2.0, 4.0]


def test_retry_after_forms():
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from syncd.connectors.carddav.dav import _retry_after

    assert _retry_after("7", default=1) == 7
    assert _retry_after(None, default=2) == 2
    assert _retry_after("soon", default=3) == 3
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < _retry_after(later, default=1) <= 30


@pytest.mark.radicale
def test_debug_logging_never_shows_the_password(radicale_server, carddav_book, tmp_path, caplog):
    import base64
    import logging

    from syncd.contracts import Action, ActionKind

    caplog.set_level(logging.DEBUG)
    # An earlier in-process CLI run may have quietened the HTTP client's loggers.
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    t = _radicale_target(radicale_server, tmp_path, radicale_server.url, carddav_book)
    t.open()
    key = "0d2c8a52-5b0e-4c5e-9d51-1b1c1c1c1c06"
    assert t.apply([Action(ActionKind.CREATE, "s6", key, fields={"fn": "Flo"})])[0].ok
    t.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "httpx" in {r.name for r in caplog.records}  # the HTTP layer did log
    basic = base64.b64encode(f"{radicale_server.user}:{radicale_server.password}".encode())
    assert radicale_server.password not in text and basic.decode() not in text


def test_plaintext_off_loopback(caplog):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="http://"):
        CardDavConnection.model_validate({"url": "http://dav.example.com/"})
    CardDavConnection.model_validate({"url": "http://127.0.0.1:5232/"})
    assert "plain http" not in caplog.text  # loopback: fine, quiet
    CardDavConnection.model_validate({"url": "http://dav.example.com/", "allow_plaintext": True})
    assert "plain http" in caplog.text
