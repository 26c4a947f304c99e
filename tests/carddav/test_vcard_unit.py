"""The vCard builder and reader on their own (no server)."""

from __future__ import annotations

import pytest
import vobject

from syncd.connectors.carddav import vcard
from syncd.connectors.carddav.vcard import VCardError, build_vcard


def test_resource_names():
    assert vcard.resource_name("0f6e1c2a-1111-2222-3333-444455556666") == (
        "syncd-0f6e1c2a-1111-2222-3333-444455556666.vcf"
    )
    hashed = vcard.resource_name("Case-Sensitive")
    assert hashed.startswith("syncd-h-") and hashed != vcard.resource_name("case-sensitive")
    for hostile in ("../x", "a/b", ".", "", "x" * 101, "é", "a b", "%2e%2e"):
        name = vcard.resource_name(hostile)
        assert name.startswith("syncd-h-") and "/" not in name and ".." not in name
    assert vcard.key_from_name("syncd-abc-1.vcf") == "abc-1"
    assert vcard.key_from_name(hashed) is None
    assert vcard.key_from_name("hand.vcf") is None


def test_digest_survives_reserialisation_but_not_edits():
    text = build_vcard("k-1", {"fn": "Ann, B.", "email": ["a@x", "b@x"], "note": "é" * 90})
    assert not vcard.edited_elsewhere(text)
    # what another server might do: LF line ends, other folding, properties reordered
    lines = text.replace("\r\n ", "").split("\r\n")[:-1]  # unfolded
    props = sorted(lines[1:-1], key=lambda ln: ln.split(":")[0].split(";")[0], reverse=True)
    assert props != lines[1:-1]
    reordered = [lines[0], *props, lines[-1], ""]
    refolded = "\n".join(reordered).replace("é" * 10, "é" * 5 + "\n " + "é" * 5)
    assert not vcard.edited_elsewhere(refolded)
    assert vcard.same_content(refolded, text)
    assert vcard.edited_elsewhere(text.replace("FN:Ann", "FN:Anne"))
    # parameters written another way are the same content
    v3 = build_vcard("k-2", {"email": ["a@x", "b@x"], "tel_work": "1"}, version="3.0")
    other_style = v3.replace("EMAIL;TYPE=INTERNET,PREF:", 'EMAIL;type=pref;TYPE="internet":')
    assert other_style != v3 and not vcard.edited_elsewhere(other_style)
    assert vcard.edited_elsewhere(v3.replace("TEL;TYPE=WORK:", "TEL;TYPE=HOME:"))
    # the order of values of one property counts
    swapped = text.replace("EMAIL;PREF=1:a@x\r\nEMAIL:b@x", "EMAIL:b@x\r\nEMAIL;PREF=1:a@x")
    assert swapped != text and vcard.edited_elsewhere(swapped)
    assert vcard.owner_key(text) == "k-1"
    assert vcard.owner_key("BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n") is None


def test_field_forms_and_errors():
    text = build_vcard(
        "k",
        {
            "n": {"family": "Doe", "given": "J"},
            "tel": ["+1", {"value": "+2", "type": "home,voice"}],
            "adr": {"street": "1 Way", "locality": "Town", "country": "NZ"},
            "kind": "org",
            "url": ["https://a.example", "https://b.example"],
            "note": "tab\there\x00\x1b gone\r\nnew line",
        },
        version="4.0",
    )
    card = vobject.readOne(text)
    assert card.fn.value == "J Doe"  # derived from N
    assert [t.value for t in card.contents["tel"]] == ["+1", "+2"]
    assert card.contents["tel"][1].params["TYPE"] == ["home", "voice"]
    assert card.adr.value.city == "Town" and card.kind.value == "org"
    assert card.note.value == "tab\there gone\nnew line"
    with pytest.raises(VCardError, match="kind"):
        build_vcard("k", {"kind": "robot"})
    with pytest.raises(VCardError, match="x_"):
        build_vcard("k", {"x_Bad Name": "v"})
    with pytest.raises(VCardError, match="x_syncd_key"):
        build_vcard("k", {"x_syncd_key": "forged"})
    with pytest.raises(VCardError, match="expected text"):
        build_vcard("k", {"title": True})
    with pytest.raises(VCardError, match="one value"):
        build_vcard("k", {"title": ["a", "b"]})
    with pytest.raises(VCardError, match="http"):
        build_vcard("k", {"photo": "javascript:alert(1)"})
    # FN falls back to org, then e-mail, then the key
    assert vobject.readOne(build_vcard("k", {"org": "Acme"})).fn.value == "Acme"
    assert vobject.readOne(build_vcard("k", {"email": "a@x"})).fn.value == "a@x"
    assert vobject.readOne(build_vcard("key-9", {})).fn.value == "key-9"
