"""What ends up in Radicale: vCard 3.0 and 4.0 content parsed back, hostile values and
keys, unicode, photos, groups, per-action failures."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote

import pytest
import vobject

from syncd.connectors.carddav import vcard
from tests.carddav.conftest import create, delete, ok, update

pytestmark = pytest.mark.radicale

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40

PERSON = {
    "fn": "Zoë Ångström",
    "given": "Zoë",
    "family": "Ångström",
    "email": ["zoe@example.com", "z.angstrom@example.org"],
    "tel_work": "+49 30 1234",
    "tel_mobile": ["+49 170 55"],
    "org": "Acme GmbH",
    "department": "R&D",
    "title": "Engineer",
    "street": "Hauptstraße 1",
    "locality": "Berlin",
    "postal_code": "10115",
    "country": "DE",
    "categories": ["staff", "berlin"],
    "x_employee_id": "E-007",
}


def _types(line) -> list[str]:
    return [t.lower() for v in line.params.get("TYPE", []) for t in v.split(",")]


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_create_update_delete_parsed_back(make_target, cards, version):
    target = make_target(vcard_version=version)
    res = ok(target.apply([create("p-1", **PERSON), create("p-2", fn="Second")]))
    assert all(r.target_id.startswith(target.book_path + "syncd-p-") for r in res)
    card = cards()["p-1"]
    assert card.version.value == version
    assert card.fn.value == "Zoë Ångström"
    assert (card.n.value.family, card.n.value.given) == ("Ångström", "Zoë")
    emails = card.contents["email"]
    assert [e.value for e in emails] == ["zoe@example.com", "z.angstrom@example.org"]
    if version == "4.0":
        assert emails[0].params["PREF"] == ["1"]
    else:
        assert "pref" in _types(emails[0]) and "internet" in _types(emails[0])
    tels = {t.value: _types(t) for t in card.contents["tel"]}
    assert "work" in tels["+49 30 1234"] and "cell" in tels["+49 170 55"]
    assert card.org.value == ["Acme GmbH", "R&D"]
    assert card.title.value == "Engineer"
    adr = card.adr.value
    assert (adr.street, adr.city, adr.code, adr.country) == (
        "Hauptstraße 1",
        "Berlin",
        "10115",
        "DE",
    )
    assert card.categories.value == ["staff", "berlin"]
    assert card.x_employee_id.value == "E-007"
    assert card.x_syncd_key.value == "p-1"

    # update: a field changes, a field goes away; the neighbour is untouched
    changed = {**PERSON, "title": "Lead", "categories": None}
    res = ok(target.apply([update("p-1", res[0].target_id, **changed)]))
    assert res[0].detail is None  # one plain PUT If-Match, no surprise
    now = cards()
    assert now["p-1"].title.value == "Lead" and "categories" not in now["p-1"].contents
    assert now["p-2"].fn.value == "Second"

    ok(target.apply([delete("p-1", res[0].target_id)]))
    assert sorted(cards()) == ["p-2"]


HOSTILE = 'Smith, John; "Jr" \\ back\\slash\nEND:VCARD\r\nBEGIN:VCARD\nUID:evil'


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_hostile_values_stay_data(make_target, cards, raw_cards, version):
    target = make_target(vcard_version=version)
    fields = {
        "fn": HOSTILE,
        "note": "line one\nEND:VCARD\nBEGIN:VCARD\nFN:injected\r\nlast; line, with \\ stuff",
        "org": ["A, B; C", "Dept\\X"],
        "family": "O'Brien;Smith",
        "given": "Ann,Marie",
        "categories": ["one,two", "three;four"],
        "email": "weird,addr;x@example.com",
        "x_comment": "a:b;c,d\\e",
    }
    ok(target.apply([create("h-1", **fields)]))
    raw = list(raw_cards().values())
    assert len(raw) == 1
    lines = raw[0].split("\r\n")  # the text parts are escaped inside single lines
    assert lines.count("BEGIN:VCARD") == 1 and lines.count("END:VCARD") == 1
    assert not re.search(r"^UID:evil", raw[0], re.M)
    card = cards()["h-1"]
    expected_fn = HOSTILE.replace("\r\n", "\n")
    assert card.fn.value == expected_fn
    assert card.note.value == fields["note"].replace("\r\n", "\n")
    assert card.org.value == ["A, B; C", "Dept\\X"]
    assert (card.n.value.family, card.n.value.given) == ("O'Brien;Smith", "Ann,Marie")
    assert card.categories.value == ["one,two", "three;four"]
    assert card.email.value == "weird,addr;x@example.com"
    assert card.x_comment.value == "a:b;c,d\\e"
    assert len(card.contents["uid"]) == 1


def test_hostile_and_odd_keys_make_safe_names(make_target, cards, raw_cards):
    target = make_target()
    keys = ["../../../etc/passwd", "a/b?c#d", "UPPER-Case", "Ünïcode ключ", "x" * 300, "k;,\\"]
    res = ok(target.apply([create(k, fn=f"name {i}") for i, k in enumerate(keys)]))
    names = [r.target_id.split(" ")[0].rpartition("/")[2] for r in res]
    for r in res:
        assert r.target_id.startswith(target.book_path)
    assert all(re.fullmatch(r"syncd-h-[0-9a-f]{40}\.vcf", n) for n in names)
    assert len(set(names)) == len(keys)
    assert sorted(cards()) == sorted(keys)  # UID = the key, exactly
    assert all(unquote(h).startswith(target.book_path) for h in raw_cards())
    # and they can be updated and deleted by their target ids
    ok(target.apply([update(keys[0], res[0].target_id, fn="renamed")]))
    ok(target.apply([delete(keys[1], res[1].target_id)]))
    now = cards()
    assert now[keys[0]].fn.value == "renamed" and keys[1] not in now


def test_unicode_exact(make_target, cards):
    target = make_target(vcard_version="4.0")
    texts = {
        "u-1": "東京 山田太郎 — 👩‍💻 🇩🇪",
        "u-2": "مرحبا שלום",
        "u-3": "Jose\u0301 " + "é" * 120,  # long: folded across UTF-8 boundaries
    }
    ok(target.apply([create(k, fn=t, note=t) for k, t in texts.items()]))
    got = cards()
    for k, t in texts.items():
        assert got[k].fn.value == t and got[k].note.value == t


def test_photo_3_0_round_trip(make_target, cards):
    target = make_target(vcard_version="3.0")
    ok(target.apply([create("ph-1", fn="Pic", photo=JPEG), create("ph-2", fn="Png", photo=PNG)]))
    got = cards()
    assert got["ph-1"].photo.value == JPEG
    assert got["ph-1"].photo.params["TYPE"] == ["JPEG"]
    big = JPEG * 8  # several KiB of base64: many folded lines through the real server
    ok(target.apply([create("ph-3", fn="Big", photo=big)]))
    assert cards()["ph-3"].photo.value == big
    assert got["ph-2"].photo.value == PNG


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_every_line_is_folded_at_75_octets(version):
    """RFC 6350 3.2 / RFC 2426 2.6: lines longer than 75 octets are folded. vobject left a
    PHOTO's base64 on one line of kilobytes; folds must not split UTF-8 sequences."""
    fields = {"fn": "Zoë " + "東京" * 60, "note": "é€👩‍💻" * 50, "photo": JPEG * 3}
    text = vcard.build_vcard("fold-1", fields, version=version)
    lines = text.split("\r\n")
    assert max(len(ln.encode("utf-8")) for ln in lines) <= 75
    assert sum(1 for ln in lines if ln.startswith(" ")) > 40  # the photo really was folded
    card = vobject.readOne(text)
    assert card.fn.value == fields["fn"] and card.note.value == fields["note"]


def test_photo_4_0_is_a_data_uri():
    # Checked on the text syncd sends: Radicale 3 itself cuts 4.0 data: URIs at the comma
    # when it re-serialises a card (a vobject limitation), so the server is not the judge.
    text = vcard.build_vcard("ph-4", {"fn": "Pic", "photo": JPEG}, version="4.0")
    unfolded = text.replace("\r\n ", "")
    line = next(ln for ln in unfolded.split("\r\n") if ln.startswith("PHOTO"))
    prefix = "PHOTO:data:image/jpeg;base64,"
    assert line.startswith(prefix)
    assert base64.b64decode(line[len(prefix) :]) == JPEG
    url = vcard.build_vcard("ph-5", {"photo": "https://img.example.com/a.jpg"}, version="4.0")
    assert "PHOTO:https://img.example.com/a.jpg\r\n" in url


def test_group_cards(make_target, cards, raw_cards):
    v4 = make_target(vcard_version="4.0")
    people = ok(
        v4.apply(
            [
                create("0f6e-aaaa", fn="Ann"),
                create("Odd Key/1", fn="Bob"),  # hashed resource name
            ]
        )
    )
    members = [people[0].target_id, people[1].target_id, "plain-key-3"]
    group = ok(v4.apply([create("grp-1", fn="Team", kind="group", members=members)]))
    card = cards()["grp-1"]
    assert card.kind.value == "group"
    assert [m.value for m in card.contents["member"]] == [
        "urn:uuid:0f6e-aaaa",
        "urn:uuid:Odd%20Key%2F1",
        "urn:uuid:plain-key-3",
    ]
    # the same group in vCard 3.0 (Apple's form), in another book of the same account
    v3 = make_target(vcard_version="3.0", addressbook=v4.options.addressbook + "-v3")
    ok(v3.apply([create("grp-1", fn="Team", kind="group", members=["0f6e-aaaa"])]))
    got3 = _cards_at(v3)
    card3 = got3["grp-1"]
    assert card3.x_addressbookserver_kind.value == "group"
    assert card3.x_addressbookserver_member.value == "urn:uuid:0f6e-aaaa"
    # members change: one leaves
    ok(
        v4.apply(
            [update("grp-1", group[0].target_id, fn="Team", kind="group", members=members[:1])]
        )
    )
    assert [m.value for m in cards()["grp-1"].contents["member"]] == ["urn:uuid:0f6e-aaaa"]


def _cards_at(target) -> dict:
    """Cards of another book, read with the target's own credentials via plain httpx."""
    import httpx
    from lxml import etree

    conn = target.connection
    with httpx.Client(auth=(conn.username, conn.password.reveal())) as c:
        resp = c.request(
            "PROPFIND",
            target.book,
            headers={"Depth": "1"},
            content='<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>',
        )
        hrefs = [h.text for h in etree.fromstring(resp.content).iter("{DAV:}href")]
        out = {}
        for h in hrefs:
            if h.endswith(".vcf"):
                card = vobject.readOne(c.get(target.book + h.rpartition("/")[2]).text)
                out[card.uid.value] = card
        return out


def test_bad_records_fail_alone(make_target, cards):
    target = make_target()
    results = target.apply(
        [
            create("b-1", fn="Fine"),
            create("b-2", fn="Typo", emial="x@example.com"),
            create("b-3", fn="Not a picture", photo=b"GIF? no"),
            create("b-4", fn="Members without group", members=["x"]),
            create("b-5", fn="Fine too"),
        ]
    )
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "emial" in results[1].error
    assert "photo" in results[2].error
    assert "members" in results[3].error
    assert sorted(cards()) == ["b-1", "b-5"]


def test_requests_per_action_and_concurrency(make_target, cards):
    counted: list[str] = []
    target = make_target(concurrency=4, hooks={"request": [lambda r: counted.append(r.method)]})
    opened = len(counted)
    res = ok(target.apply([create(f"c-{i:02d}", fn=f"Card {i}") for i in range(40)]))
    assert counted[opened:].count("PUT") == 40 and len(counted) - opened == 40
    before = len(counted)
    ok(target.apply([update(r.action.key, r.target_id, fn="x " + r.action.key) for r in res]))
    assert len(counted) - before == 40  # one PUT If-Match each
    assert len(cards()) == 40
