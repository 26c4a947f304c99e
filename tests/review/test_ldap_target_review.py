"""Adversarial review of the LDAP target against a real slapd."""

from __future__ import annotations

import unicodedata

import ldap3
import pytest

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


HOSTILE = [
    'Smith, John+Jr "the" <boss>; =x',
    "#hash leading",
    " leading and trailing ",
    "back\\slash*()",
    "a\x00nul",
    "עברית مرحبا 👩‍💻",
]


def test_hostile_names_round_trip_without_moves(slapd, root_pw_file):
    """DN specials, leading '#' and spaces, filter metacharacters, NUL, RTL and emoji in
    the RDN value and the department OU: created, found again by id and key, not moved
    on a repeat, disabled into disabled_ou and re-enabled back, groups kept right."""
    target = make_target(
        slapd,
        root_pw_file,
        dn_template="uid={uid},ou={department},ou=people,dc=example,dc=com",
        disabled_attributes={},
    )
    reader = Reader(slapd)
    reader.conn.add(
        "cn=staff,ou=groups,dc=example,dc=com",
        ["groupOfNames"],
        {"cn": "staff", "member": ["cn=nobody"]},
    )
    for i, name in enumerate(HOSTILE):
        key = f"H{i}"
        fields = person(key, "X", "Y", department=name, uid=name, groups=["staff"])
        fields["mail"] = f"h{i}@example.com"
        [res] = target.apply([create(key, fields)])
        assert res.ok, (name, res.error)
        tid = res.target_id
        [again] = target.apply([update(key, fields, tid)])
        assert again.ok and "moved" not in (again.detail or ""), (name, again.detail)
        [gone] = target.apply([delete(key, tid)])
        assert gone.ok and "moved" in (gone.detail or ""), (name, gone.detail)
        [back] = target.apply([update(key, fields, tid)])
        assert back.ok and "re-enabled" in (back.detail or ""), (name, back.detail)
        entry = reader.one(f"(employeeNumber={key})")
        assert entry["uid"].values == [name.strip()] or name in entry["uid"].values
        members = reader.members("cn=staff,ou=groups,dc=example,dc=com")
        assert entry.entry_dn.lower() in members, (name, entry.entry_dn, members)


def _reader_bind(slapd, tmp_path):
    """A non-root account: default ACL (read for all), the server's sizelimit 500."""
    from syncd.connectors.ldap.connection import LdapConnection
    from syncd.connectors.ldap.target import LdapTarget, LdapTargetOptions
    from tests.hr.conftest import default_options

    slapd.add(
        "dn: cn=reader,dc=example,dc=com\nobjectClass: person\ncn: reader\nsn: r\n"
        "userPassword: readerpw\n"
    )
    pw = tmp_path / "reader.pw"
    pw.write_text("readerpw\n")
    conn = LdapConnection.model_validate(
        {
            "url": slapd.url,
            "start_tls": False,
            "bind_dn": "cn=reader,dc=example,dc=com",
            "password": {"file": str(pw)},
        }
    )

    def target(**overrides):
        t = LdapTarget(
            conn, LdapTargetOptions.model_validate(default_options(**overrides)), job="j"
        )
        t.open()
        return t

    return target


def test_size_limited_correlation_is_one_clear_error(slapd, tmp_path):
    """A correlation search over the size limit of a non-root bind stops the run with a
    TargetError (one line), not an internal error with a traceback."""
    from syncd.errors import TargetError

    ldif = "".join(
        f"dn: uid=p{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n"
        f"uid: p{i}\ncn: p{i}\nsn: p\ndepartmentNumber: Sales\n\n"
        for i in range(510)
    )
    slapd.stop()
    slapd.slapadd(ldif)
    slapd.start()
    target = _reader_bind(slapd, tmp_path)(
        correlate=[{"field": "departmentNumber", "attribute": "departmentNumber"}]
    )
    with pytest.raises(TargetError, match=r"correlation by departmentNumber: .*sizeLimit"):
        target.correlate(person("E9", "A", "B"))
    # A read-only bind: every write fails per action, with the server's reason.
    [res] = target.apply([create("E9", person("E9", "A", "B"))])
    assert not res.ok and "insufficientAccessRights" in (res.error or "")


def test_bad_filter_and_attribute_names_are_config_errors():
    from pydantic import ValidationError

    from syncd.connectors.ldap.target import LdapTargetOptions
    from tests.hr.conftest import default_options

    with pytest.raises(ValidationError, match="not an LDAP filter"):
        LdapTargetOptions.model_validate(default_options(entry_filter="(objectClass=person"))
    with pytest.raises(ValidationError, match="not an attribute name"):
        LdapTargetOptions.model_validate(
            default_options(correlate=[{"field": "mail", "attribute": "mail)(uid=*"}])
        )
    ok = LdapTargetOptions.model_validate(default_options(entry_filter="objectClass=person"))
    assert ok.filter == "(objectClass=person)"


def test_correlation_never_takes_over_an_entry_with_another_key(slapd, root_pw_file):
    """A mapping without an employeeNumber field correlates by mail; the entry with that
    mail already belongs to employee E5: linking E7 to it would overwrite E5's number
    and attributes. The record fails alone instead."""
    target = make_target(slapd, root_pw_file)
    e5 = person("E5", "Eve", "Five")
    [res] = target.apply([create("E5", e5)])
    assert res.ok, res.error
    e7 = {k: v for k, v in person("E7", "Sam", "Seven").items() if k != "employeeNumber"}
    e7["mail"] = e5["mail"]  # an HR typo
    [tid] = target.correlate(e7)  # nothing in the record says it is someone else's
    [res] = target.apply([update("E7", e7, tid)])
    assert not res.ok and "belongs to another record" in (res.error or "")
    entry = Reader(slapd).one("(mail=eve.five@example.com)")
    assert entry["employeeNumber"].value == "E5" and entry["sn"].value == "Five"


def test_huge_group_membership_add_and_remove(slapd, root_pw_file):
    """A managed group with 12k members (bulk path: the members are read once)."""
    import time

    members = "".join(f"member: uid=m{i},ou=people,dc=example,dc=com\n" for i in range(12000))
    slapd.stop()
    slapd.slapadd(
        "dn: cn=staff,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: staff\n" + members
    )
    slapd.start()
    target = make_target(slapd, root_pw_file, disabled_groups="remove")
    people = {f"B{i}": person(f"B{i}", "Big", f"Group{i}", groups=["staff"]) for i in range(50)}
    started = time.monotonic()
    results = target.apply([create(k, f) for k, f in people.items()])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    reader = Reader(slapd)
    staff = "cn=staff,ou=groups,dc=example,dc=com"
    assert len(reader.members(staff)) == 12050
    ids = {r.action.key: r.target_id for r in results}
    gone = target.apply([delete(k, ids[k]) for k in list(people)[:25]])
    assert all(r.ok for r in gone), [r.error for r in gone if not r.ok][:3]
    got = reader.members(staff)
    assert len(got) == 12025
    assert not any("group0," in m for m in got) and any("group49," in m for m in got)
    assert time.monotonic() - started < 20


def test_bytes_values_are_compared_as_the_entry_reads_them(slapd, root_pw_file):
    """A record value given as bytes (a SQL bytea/BLOB column) that is valid UTF-8 is
    read back from the entry as text: it must not count as a change on every update,
    and real binary values must not either."""
    target = make_target(
        slapd, root_pw_file, owned_attributes=["uid", "cn", "sn", "description", "jpegPhoto"]
    )
    photo = b"\xff\xd8\xff\xe0binary\x00\x01"
    fields = person("E8", "Bin", "Ary", description=b"plain text", jpegPhoto=photo)
    [res] = target.apply([create("E8", fields)])
    assert res.ok, res.error
    [again] = target.apply([update("E8", fields, res.target_id)])
    assert again.ok and again.detail == "already up to date", again.detail
