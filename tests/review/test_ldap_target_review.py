"""Adversarial review of the LDAP target against a real slapd."""

from __future__ import annotations

import unicodedata

import ldap3

from tests.hr.conftest import PEOPLE, Reader, create, delete, make_target, person, update


def _by_key(reader: Reader, key: str):
    return reader.one(f"(employeeNumber={key})")


def test_disable_keeps_other_values_of_a_multi_valued_marker(slapd, root_pw_file):
    """employeeType is multi-valued: disabling adds 'disabled' next to values others
    wrote (contractor), and re-enabling removes only 'disabled'."""
    target = make_target(slapd, root_pw_file)
    fields = person("E1", "Ann", "Lee")
    [res] = target.apply([create("E1", fields)])
    assert res.ok, res.error
    tid = res.target_id
    reader = Reader(slapd)
    dn = _by_key(reader, "E1").entry_dn
    reader.conn.modify(dn, {"employeeType": [(ldap3.MODIFY_ADD, ["contractor"])]})
    [res] = target.apply([delete("E1", tid)])
    assert res.ok, res.error
    types = {v.lower() for v in _by_key(reader, "E1")["employeeType"].values}
    assert types == {"contractor", "disabled"}
    [res] = target.apply([update("E1", fields, tid)])
    assert res.ok, res.error
    assert "re-enabled" in (res.detail or "")
    types = {v.lower() for v in _by_key(reader, "E1")["employeeType"].values}
    assert types == {"contractor"}


def test_nfd_name_of_an_nfc_entry_is_not_a_rename(slapd, root_pw_file):
    """The HR export writes 'José' decomposed (NFD), the directory holds it composed
    (NFC): that is the same name, so no modrdn (and no failure) every night."""
    target = make_target(slapd, root_pw_file)
    nfc = unicodedata.normalize("NFC", "José")
    nfd = unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    fields = person(
        "E2",
        nfc,
        "Núñez",
        uid=unicodedata.normalize("NFC", "josé.núñez"),
        mail="jose.nunez@example.com",
    )
    [res] = target.apply([create("E2", fields)])
    assert res.ok, res.error
    tid = res.target_id
    fields_nfd = {
        k: unicodedata.normalize("NFD", v) if isinstance(v, str) and k != "mail" else v
        for k, v in fields.items()
    }
    for _ in range(2):
        [res] = target.apply([update("E2", fields_nfd, tid)])
        assert res.ok, res.error
        assert "moved" not in (res.detail or ""), res.detail
    assert len(Reader(slapd).find("(employeeNumber=E2)", PEOPLE)) == 1


def test_disable_marker_in_a_single_valued_attribute_replaces(slapd, root_pw_file):
    """preferredLanguage is SINGLE-VALUE: the marker cannot sit next to the old value,
    so it replaces it (the disable must not fail)."""
    target = make_target(slapd, root_pw_file, disabled_attributes={"preferredLanguage": "x-off"})
    fields = person("E3", "Bo", "Ek")
    [res] = target.apply([create("E3", fields)])
    assert res.ok, res.error
    reader = Reader(slapd)
    dn = _by_key(reader, "E3").entry_dn
    reader.conn.modify(dn, {"preferredLanguage": [(ldap3.MODIFY_REPLACE, ["en"])]})
    [res] = target.apply([delete("E3", res.target_id)])
    assert res.ok, res.error
    assert _by_key(reader, "E3")["preferredLanguage"].values == ["x-off"]
