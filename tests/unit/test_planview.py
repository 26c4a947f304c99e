"""Plan values shown to people: secrets hidden, binary summarised, long text cut."""

from __future__ import annotations

import hashlib

from syncd import planview
from syncd.connectors.ldap.preview import _line
from syncd.mapping import Mapping


def test_binary_is_summarised_with_kind_size_and_digest():
    jpeg = b"\xff\xd8\xff\xe0" + b"x" * 4200
    digest = hashlib.sha256(jpeg).hexdigest()[:8]
    assert planview.show_value(jpeg) == f"<jpeg 4.1 KiB sha256:{digest}…>"
    assert planview.show_value(b"\x01\x02").startswith("<binary 2 B sha256:")


def test_long_text_is_cut():
    shown = planview.show_value("a" * 500)
    assert shown.startswith("'" + "a" * planview.MAX_TEXT + "'") and "(500 chars)" in shown


def test_secret_fields_by_name_and_by_mapping_mark():
    mapping = Mapping.from_text(
        "version: 1\nfields:\n  cn: cn\n  pin: {value: roomNumber, secret: true}\n"
    )
    is_secret = planview.secret_names(mapping)
    assert is_secret("userPassword") and is_secret("unicodePwd") and is_secret("pin")
    assert not is_secret("cn")
    assert planview.show_values("pin", ["4711"], is_secret) == "<secret>"
    assert planview.json_value("userPassword", ["x"], is_secret) == "<secret>"
    assert planview.show_values("pin", [], is_secret) == "(none)"


def test_mapping_secret_must_be_a_boolean():
    problems = Mapping.validate_text("version: 1\nfields:\n  pin: {value: x, secret: maybe}\n")
    assert any("secret must be true or false" in p for p in problems)


def test_ldif_lines_base64_what_is_not_a_safe_string():
    assert _line("cn", "Ann") == "cn: Ann"
    assert _line("cn", "José") == "cn:: Sm9zw6k="
    assert _line("cn", " lead").startswith("cn:: ")
    assert _line("description", "a\nb").startswith("description:: ")
    assert _line("jpegPhoto", b"\xff\xd8").startswith("jpegPhoto:: ")
