"""HR filters: transliteration, login names, sAMAccountName rules, IDNA e-mail."""

from __future__ import annotations

import pytest

from syncd.contracts import Change, Op
from syncd.errors import MappingError
from syncd.mapping import Mapping
from syncd.mapping import filters as f


def test_translit_gives_ascii():
    assert f.translit("Jürgen Müller") == "Jurgen Muller"
    assert f.translit(["Łukasz Żółć", "Straße"]) == ["Lukasz Zolc", "Strasse"]
    assert f.translit("Сергей") == "Sergey"
    assert f.translit(None) is None


@pytest.mark.parametrize(
    "value, args, want",
    [
        ("Jürgen Müller", (), "jurgen.muller"),
        ("  Anne-Marie  O'Neil ", (), "anne-marie.oneil"),
        ("José María Ñúñez García", (), "jose.maria.nunez.garcia"),
        ("Jürgen Müller-Lüdenscheidt", (12,), "jurgen.mulle"),
        ("Ab..Cd", (), "ab.cd"),
        ("Ab Cd", (20, ""), "abcd"),
        ("Zoë", (20, "_"), "zoe"),
    ],
)
def test_login(value, args, want):
    assert f.login(value, *args) == want


def test_login_without_letters_is_an_error():
    with pytest.raises(ValueError, match="login"):
        f.login("山田 !!!".replace("山田", "").strip() or "!!!")


@pytest.mark.parametrize(
    "value, want",
    [
        ("jmüller", "jmuller"),
        ('a"b/c\\d[e]f:g;h|i=j,k+l*m?n<o>p@q', "abcdefghijklmnopq"),
        ("  .john.doe.  ", "john.doe"),
        ("christopher.montgomery-smith", "christopher.montgome"),
        ("abcdefghijklmnopqrs.tuv", "abcdefghijklmnopqrs"),  # no trailing dot after the cut
        ("Jean Paul", "Jean Paul"),  # inner spaces are allowed
    ],
)
def test_samaccountname_rules(value, want):
    got = f.samaccountname(value)
    assert got == want
    assert len(got) <= 20 and not set(got) & set('"/\\[]:;|=,+*?<>@')
    assert got == got.strip(". ")


def test_samaccountname_of_nothing_usable_is_an_error():
    with pytest.raises(ValueError, match="sAMAccountName"):
        f.samaccountname("@@ ..")


def test_email_idna():
    assert f.email("Jurgen@Bücher.Example", idna=True) == "Jurgen@xn--bcher-kva.example"
    assert f.email("a@example.com", idna=True) == "a@example.com"
    assert f.email("jürgen@bücher.example") == "jürgen@bücher.example"  # default unchanged
    with pytest.raises(ValueError, match=r"local part .* not ASCII"):
        f.email("jürgen@example.com", idna=True)
    with pytest.raises(ValueError, match="domain"):
        f.email("a@exa mple..com", idna=True)


def test_a_non_ascii_local_part_quarantines_the_entry_with_a_clear_reason():
    m = Mapping.from_text(
        'version: 1\nfields:\n  mail: "{{ mail | first | email(idna=true) }}"\n', "t.yaml"
    )
    ok = m.map(Change(Op.UPSERT, "1", None, {"mail": ["zoe@exämple.org"]}))
    assert ok.fields["mail"] == "zoe@xn--exmple-cua.org"
    with pytest.raises(MappingError, match=r"^field 'mail': .*local part 'zoë' is not ASCII"):
        m.map(Change(Op.UPSERT, "2", None, {"mail": ["zoë@example.org"]}))
