"""Issue 12: a large run answers its look-ups from one paged read per scope (the index)
and reads each batch's entries at once, against a real slapd. The index must give the
answers the per-entry searches give, and follow the run's own writes."""

from __future__ import annotations

import logging

import ldap3
import pytest

from syncd.connectors.ldap import target as target_mod
from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.target import LdapTarget, LdapTargetOptions
from tests.hr.conftest import (
    BASE,
    PEOPLE,
    create,
    default_options,
    delete,
    make_target,
    person,
    update,
)
from tests.servers.slapd import Slapd

pytestmark = pytest.mark.slapd


def _people_ldif(n: int, *, start: int = 0, dept: str = "Sales") -> str:
    out = [f"dn: ou={dept},{PEOPLE}\nobjectClass: organizationalUnit\nou: {dept}\n"]
    for i in range(start, start + n):
        out.append(
            f"dn: uid=p{i}.bulk,ou={dept},{PEOPLE}\nobjectClass: inetOrgPerson\n"
            f"uid: p{i}.bulk\ncn: P{i} Bulk\nsn: Bulk\ngivenName: P{i}\n"
            f"mail: p{i}.bulk@example.com\nemployeeNumber: {5000 + i}\n"
        )
    return "\n".join(out)


@pytest.fixture
def index_first(monkeypatch):
    """Build the index at the first look-up, so small tests exercise it."""
    monkeypatch.setattr(target_mod, "INDEX_AFTER", 1)


def test_correlating_and_linking_many_records_takes_a_bounded_number_of_searches(
    slapd, root_pw_file, reader
):
    n = 300
    slapd.add(_people_ldif(n))
    t = make_target(slapd, root_pw_file)
    t.ops.clear()
    records = {str(5000 + i): person(str(5000 + i), f"P{i}", "Bulk") for i in range(n)}
    linked = {}
    for key, fields in records.items():
        [tid] = t.correlate(fields)
        linked[key] = tid
    correlating = t.ops["search"]
    # Per-entry searches were 2 per record here (two scopes: base and disabled_ou).
    assert t._index is not None and len(t._index) == n
    assert correlating <= target_mod.INDEX_AFTER + 5, t.ops
    actions = [update(k, f, linked[k]) for k, f in records.items()]
    results = []
    for start in range(0, n, LdapTarget.batch_size):
        results += t.apply(actions[start : start + LdapTarget.batch_size])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert {r.target_id for r in results} == set(linked.values())
    # one read of the batch's entries per batch (ids all found in the first scope),
    # not one search per entry
    assert t.ops["search"] - correlating <= 2 * (n // LdapTarget.batch_size + 1), t.ops
    assert reader.one("(employeeNumber=5007)").title.value == "Clerk"


def test_a_run_touching_few_entries_reads_no_index(slapd, root_pw_file):
    slapd.add(_people_ldif(3))
    t = make_target(slapd, root_pw_file)
    t.ops.clear()
    for i in range(3):
        assert len(t.correlate(person(str(5000 + i), f"P{i}", "Bulk"))) == 1
    assert t._index is None and t.ops["search"] == 3 * 2


def test_index_answers_like_the_searches(slapd, root_pw_file, reader, index_first):
    slapd.add(
        f"""dn: uid=twin1,{PEOPLE}
objectClass: inetOrgPerson
uid: twin1
cn: Twin
sn: Twin
mail: Twin@Example.com

dn: uid=twin2,{PEOPLE}
objectClass: inetOrgPerson
uid: twin2
cn: Twin
sn: Twin
mail: twin@example.com

dn: uid=taken,{PEOPLE}
objectClass: inetOrgPerson
uid: taken
cn: Taken
sn: Taken
employeeNumber: 9999
mail: taken@example.com

dn: uid=spaced,{PEOPLE}
objectClass: inetOrgPerson
uid: spaced
cn: Spaced
sn: Spaced
employeeNumber: E 77
"""
    )
    t = make_target(slapd, root_pw_file)
    uuid = {u: reader.one(f"(uid={u})").entryUUID.value for u in ("twin1", "twin2", "spaced")}
    # case-insensitive like mail's equality rule: both twins, an ambiguity
    both = t.correlate({"employeeNumber": "2003", "mail": "TWIN@example.COM"})
    assert t._index is not None
    assert sorted(both) == sorted([uuid["twin1"], uuid["twin2"]])
    assert {t.dn_of(i).split(",")[0] for i in both} == {"uid=twin1", "uid=twin2"}
    # an entry holding another record's key never matches
    assert t.correlate({"employeeNumber": "2005", "mail": "taken@example.com"}) == []
    # but it does match its own key
    assert t.correlate({"employeeNumber": "9999", "mail": "x@example.com"}) != []
    assert t.correlate({"employeeNumber": "E 77"}) == [uuid["spaced"]]
    # values are data, not filters
    assert t.correlate({"employeeNumber": "*", "mail": "*)(uid=*"}) == []
    searches = t.ops["search"]
    assert t.correlate({"employeeNumber": "2004", "mail": "nobody@example.com"}) == []
    assert t.ops["search"] == searches  # answered from memory


def test_index_follows_the_runs_own_writes(slapd, root_pw_file, reader, index_first):
    slapd.add(
        f"""dn: uid=old,{PEOPLE}
objectClass: inetOrgPerson
uid: old
cn: Old
sn: Old
mail: shared@example.com
"""
    )
    owned = [*default_options()["owned_attributes"], "manager"]
    t = make_target(
        slapd, root_pw_file, references={"manager": "employeeNumber"}, owned_attributes=owned
    )
    old_id = reader.one("(uid=old)").entryUUID.value
    assert t.correlate({"employeeNumber": "3001", "mail": "shared@example.com"}) == [old_id]
    # Linking writes 3001 into the entry: from now on it belongs to 3001 ...
    boss = person("3001", "Old", "Boss", uid="old", mail="shared@example.com")
    [res] = t.apply([update("3001", boss, old_id)])
    assert res.ok, res.error
    # ... so another record with that mail no longer correlates to it
    assert t.correlate({"employeeNumber": "3002", "mail": "shared@example.com"}) == []
    # a department change moves it: references resolve to the new DN in the same run
    moved = dict(boss, department="Eng", departmentNumber="Eng")
    [res] = t.apply([update("3001", moved, old_id, ["department"])])
    assert res.ok and "moved" in (res.detail or ""), res
    new_dn = reader.one("(uid=old)").entry_dn
    assert new_dn.lower().startswith("uid=old,ou=eng,")
    [emp] = t.apply([create("3003", person("3003", "Em", "Ployee", manager="3001"))])
    assert emp.ok, emp.error
    assert reader.one("(employeeNumber=3003)").manager.value == new_dn
    # a created entry is in the index: its key and mail correlate to it
    assert t.correlate({"employeeNumber": "3003"}) == [emp.target_id]
    # a leaver disabled and moved to disabled_ou is still found (a scope)
    [gone] = t.apply([delete("3001", old_id)])
    assert gone.ok and "disabled" in (gone.detail or ""), gone
    assert t.correlate({"employeeNumber": "3001"}) == [old_id]
    assert t.dn_of(old_id).lower().endswith(",ou=disabled,dc=example,dc=com")


def test_login_taken_earlier_in_the_run_is_seen_as_taken(slapd, root_pw_file, reader, index_first):
    slapd.add(
        "dn: ou=staff,dc=example,dc=com\nobjectClass: organizationalUnit\nou: staff\n\n"
        "dn: uid=john.doe,ou=staff,dc=example,dc=com\nobjectClass: inetOrgPerson\n"
        "uid: john.doe\ncn: John Doe\nsn: Doe\n"
    )
    t = make_target(slapd, root_pw_file, unique={"uid": "uid"}, unique_base=BASE)
    # two joiners with the same name in one batch, a third in the next batch
    results = t.apply(
        [
            create("1401", person("1401", "John", "Doe")),
            create("1402", person("1402", "John", "Doe")),
        ]
    )
    assert all(r.ok for r in results), [r.error for r in results]
    assert t._uindex is not None
    [third] = t.apply([create("1403", person("1403", "John", "Doe"))])
    assert third.ok, third.error
    uids = {k: str(reader.one(f"(employeeNumber={k})")["uid"]) for k in ("1401", "1402", "1403")}
    assert uids == {"1401": "john.doe2", "1402": "john.doe3", "1403": "john.doe4"}
    # a login freed by a rename in this run is free again; the new one is taken
    renamed = person("1402", "Jon", "Doe", uid="jon.doe")
    [r] = t.apply([update("1402", renamed, results[1].target_id, ["uid"])])
    assert r.ok, r.error
    [fourth] = t.apply([create("1404", person("1404", "John", "Doe"))])
    [fifth] = t.apply([create("1405", person("1405", "Jon", "Doe"))])
    assert fourth.ok and fifth.ok, (fourth.error, fifth.error)
    assert str(reader.one("(employeeNumber=1404)")["uid"]) == "john.doe3"
    assert str(reader.one("(employeeNumber=1405)")["uid"]) == "jon.doe2"


def test_batch_read_sees_changes_made_between_batches(slapd, root_pw_file, reader):
    """Entries are read fresh per batch: a value someone else added since the last
    batch is kept when the next batch disables the entry."""
    t = make_target(slapd, root_pw_file)
    made = t.apply(
        [create("E1", person("E1", "Ann", "Lee")), create("E2", person("E2", "Bo", "Li"))]
    )
    assert all(r.ok for r in made)
    dn = reader.one("(employeeNumber=E1)").entry_dn
    reader.conn.modify(dn, {"employeeType": [(ldap3.MODIFY_ADD, ["contractor"])]})
    done = t.apply([delete("E1", made[0].target_id), delete("E2", made[1].target_id)])
    assert all(r.ok for r in done), [r.error for r in done]
    types = {v.lower() for v in reader.one("(employeeNumber=E1)")["employeeType"].values}
    assert types == {"contractor", "disabled"}


def test_small_page_limit_gets_smaller_pages(tmp_path):
    """slapd refuses a page bigger than size.pr (adminLimitExceeded): the index is read
    in smaller pages instead."""
    reader_dn = f"cn=reader,{BASE}"
    ldif = (
        f"dn: {reader_dn}\nobjectClass: person\ncn: reader\nsn: r\nuserPassword: readerpw\n\n"
        + _people_ldif(150)
    )
    line = f'limits dn.exact="{reader_dn}" size=20 size.pr=120 size.prtotal=unlimited'
    with Slapd(tmp_path / "slapd", ldif=ldif, limits=line) as server:
        t = _reader_target(server, tmp_path)
        found = [t.correlate(person(str(5000 + i), f"P{i}", "Bulk")) for i in range(150)]
        assert all(len(f) == 1 for f in found)
        assert t._index is not None and len(t._index) == 150
        t.close()


def _reader_target(server: Slapd, tmp_path) -> LdapTarget:
    pw = tmp_path / "reader.pw"
    pw.write_text("readerpw\n")
    conn = LdapConnection.model_validate(
        {
            "url": server.url,
            "start_tls": False,
            "bind_dn": f"cn=reader,{BASE}",
            "password": {"file": str(pw)},
        }
    )
    t = LdapTarget(conn, LdapTargetOptions.model_validate(default_options()), job="hr")
    t.open()
    return t


def test_refused_paged_read_falls_back_to_searches(tmp_path, root_pw_file, caplog):
    """A bind whose paged searches are capped (size.prtotal) cannot read the index: the
    look-ups are searched one by one and give the same answers."""
    reader_dn = f"cn=reader,{BASE}"
    ldif = (
        f"dn: {reader_dn}\nobjectClass: person\ncn: reader\nsn: r\nuserPassword: readerpw\n\n"
        + _people_ldif(30)
    )
    line = f'limits dn.exact="{reader_dn}" size=100 size.pr=10 size.prtotal=10'
    with Slapd(tmp_path / "slapd", ldif=ldif, limits=line) as server:
        t = _reader_target(server, tmp_path)
        with caplog.at_level(logging.WARNING, logger="syncd.connectors.ldap.target"):
            found = [t.correlate(person(str(5000 + i), f"P{i}", "Bulk")) for i in range(30)]
        assert all(len(f) == 1 for f in found)
        assert len({f[0] for f in found}) == 30
        assert t._index is None and t._index_failed
        assert any(
            "limit" in r.getMessage() and "one by one" in r.getMessage() for r in caplog.records
        ), caplog.text
        # the batch read is refused too: apply still finds every entry (by id)
        cur = t.current(
            [
                update(str(5000 + i), person(str(5000 + i), f"P{i}", "Bulk"), found[i][0])
                for i in range(30)
            ]
        )
        assert all(c is not None and c.dn for c in cur), cur[:2]
        t.close()
