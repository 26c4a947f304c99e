"""LdapTarget against a real Samba AD DC (directory: ad): the HR job's AD side."""

from __future__ import annotations

import uuid

import ldap3
import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.target import ACCOUNTDISABLE, LdapTarget, LdapTargetOptions, same_dn
from tests.hr.conftest import create, delete, update

pytestmark = pytest.mark.samba


def uniq(name: str) -> str:
    """sAMAccountName is unique in the whole (session-shared) domain."""
    return f"{name[:10]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ad(samba_dc, samba_ou, tmp_path):
    """(make_target, ou, groups OU, admin reader) for one test's own OU."""
    pw = tmp_path / "admin.pw"
    pw.write_text(samba_dc.admin_pw)
    groups = samba_dc.add_ou("groups", samba_ou)

    def make(tls: bool = True, **overrides) -> LdapTarget:
        conn = {
            "url": samba_dc.ldaps_url if tls else samba_dc.url,
            "bind_dn": samba_dc.admin_dn,
            "password": {"file": str(pw)},
            "start_tls": False,
        }
        if tls:
            conn["ca_file"] = samba_dc.ca_file
        opts = {
            "directory": "ad",
            "base": samba_ou,
            "dn_template": "cn={cn},ou={department}," + samba_ou,
            "owned_attributes": [
                "sAMAccountName",
                "givenName",
                "sn",
                "displayName",
                "mail",
                "title",
                "department",
            ],
            "group_base": groups,
            "correlate": [
                {"field": "employeeID", "attribute": "employeeID"},
                {"field": "mail", "attribute": "mail"},
            ],
        }
        opts.update(overrides)
        t = LdapTarget(
            LdapConnection.model_validate(conn), LdapTargetOptions.model_validate(opts), job="ad"
        )
        t.open()
        return t

    yield make, samba_ou, groups, samba_dc.connection()


def user(key: str, first: str, last: str, dept: str = "Sales", **extra) -> dict:
    tag = key[-6:]
    fields = {
        "cn": f"{first} {last}",
        "sAMAccountName": f"{first[0]}{last}{tag}".lower()[:20],
        "givenName": first,
        "sn": last,
        "displayName": f"{first} {last}",
        "mail": f"{first}.{last}.{tag}@example.test".lower(),
        "title": "Clerk",
        "department": dept,
        "employeeID": key,
    }
    fields.update(extra)
    return fields


def entry(conn: ldap3.Connection, base: str, filt: str) -> dict:
    conn.search(
        base,
        filt,
        attributes=["userAccountControl", "telephoneNumber", "title", "department", "memberOf"],
    )
    found = [e for e in conn.response if e.get("type") == "searchResEntry"]
    assert len(found) == 1, [e["dn"] for e in found]
    attrs = found[0]["attributes"]
    out = {
        k.lower(): (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in attrs.items()
    }
    return {"dn": found[0]["dn"], **out}


def uac(e: dict) -> int:
    return int(e["useraccountcontrol"])


def test_ad_create_modify_move_disable_reenable(ad, samba_dc):
    make, ou, _groups, conn = ad
    t = make()
    fields = user("900001", "Ada", "Lovelace")
    [res] = t.apply([create("900001", fields)])
    assert res.ok, res.error
    e = entry(conn, ou, "(employeeID=900001)")
    assert same_dn(e["dn"], f"CN=Ada Lovelace,OU=Sales,{ou}")
    assert res.target_id == samba_dc.guid(e["dn"])  # objectGUID is the link
    assert not uac(e) & ACCOUNTDISABLE  # random initial password set over LDAPS: enabled
    # a hand-set attribute survives an update of owned ones
    samba_dc.modify(e["dn"], telephoneNumber="+1 555 0199")
    [upd] = t.apply([update("900001", dict(fields, title="Countess"), res.target_id, ["title"])])
    assert upd.ok, upd.error
    e = entry(conn, ou, "(employeeID=900001)")
    assert e["title"] == "Countess" and e["telephonenumber"] == "+1 555 0199"
    # department change: moved, same GUID
    moved = dict(fields, title="Countess", department="Engines")
    [mv] = t.apply([update("900001", moved, res.target_id, ["department"])])
    assert mv.ok, mv.error
    assert mv.target_id == res.target_id
    assert "moved from" in mv.detail
    e = entry(conn, ou, "(employeeID=900001)")
    assert same_dn(e["dn"], f"CN=Ada Lovelace,OU=Engines,{ou}")
    # leaver: ACCOUNTDISABLE set
    [gone] = t.apply([delete("900001", res.target_id)])
    assert gone.ok and gone.detail == "disabled"
    assert uac(entry(conn, ou, "(employeeID=900001)")) & ACCOUNTDISABLE
    # returner: the create finds the account by employeeID and re-enables it
    [back] = t.apply([create("900001", moved)])
    assert back.ok, back.error
    assert back.target_id == res.target_id and "re-enabled" in back.detail
    assert not uac(entry(conn, ou, "(employeeID=900001)")) & ACCOUNTDISABLE
    # a passed end date (enabled: false) disables through the same logic
    [ended] = t.apply([update("900001", dict(moved, enabled=False), res.target_id, ["enabled"])])
    assert ended.ok and "disabled" in ended.detail
    assert uac(entry(conn, ou, "(employeeID=900001)")) & ACCOUNTDISABLE


def test_ad_groups_managed_only(ad, samba_dc):
    make, ou, groups, conn = ad
    sales = samba_dc.add_group(groups, "dept-sales", sAMAccountName=uniq("dept-sales"))
    eng = samba_dc.add_group(groups, "dept-eng", sAMAccountName=uniq("dept-eng"))
    outside = samba_dc.add_group(ou, "hand-made", sAMAccountName=uniq("hand-made"))
    t = make()
    fields = user("900002", "Grace", "Hopper", groups=["dept-sales", outside])
    [res] = t.apply([create("900002", fields)])
    assert res.ok, res.error
    dn = entry(conn, ou, "(employeeID=900002)")["dn"]
    samba_dc.add_members(outside, dn)

    def members(group: str) -> set[str]:
        conn.search(group, "(objectClass=group)", ldap3.BASE, attributes=["member"])
        return {m.lower() for m in conn.response[0]["attributes"].get("member", [])}

    assert dn.lower() in members(sales)
    [res2] = t.apply(
        [update("900002", dict(fields, groups=["dept-eng"]), res.target_id, ["groups"])]
    )
    assert res2.ok, res2.error
    assert dn.lower() in members(eng) and dn.lower() not in members(sales)
    assert dn.lower() in members(outside)  # not managed: left as it was


def test_ad_correlation_and_plaintext_creates_disabled(ad, samba_dc):
    make, ou, _groups, conn = ad
    people = samba_dc.add_ou("Sales", ou)
    a = samba_dc.add_user(people, "pre-1", employeeID="900010")
    b1 = samba_dc.add_user(people, "pre-2", mail="same@example.test")
    samba_dc.add_user(people, "pre-3", mail="same@example.test")
    t = make()
    assert t.correlate({"employeeID": "900010"}) == [samba_dc.guid(a)]
    assert t.correlate({"employeeID": "900011", "mail": "same@example.test"}).__len__() == 2
    assert t.correlate({"employeeID": "900012", "mail": "none@example.test"}) == []
    assert samba_dc.guid(b1) in t.correlate({"mail": "same@example.test"})
    # Without TLS AD refuses passwords: the joiner is created disabled, and says why.
    plain = make(tls=False)
    [res] = plain.apply([create("900013", user("900013", "Pat", "Plain"))])
    assert res.ok, res.error
    assert "created disabled" in res.detail and "encrypted" in res.detail
    assert uac(entry(conn, ou, "(employeeID=900013)")) & ACCOUNTDISABLE


def test_ad_unique_samaccountname_within_ad_rules(ad, samba_dc):
    """A sAMAccountName built by the samaccountname filter from a hostile login is one
    AD accepts; a second person whose login is the same 20 characters gets a number
    that keeps it at 20, checked domain-wide; each keeps its name on the next run."""
    from syncd.mapping.filters import samaccountname
    from tests.servers.samba import BASE

    make, ou, _groups, conn = ad
    stem = ("s" + uuid.uuid4().hex)[:19] + "x"  # ends in a letter: stem[:19] + "2" differs
    login = samaccountname(f' .{stem}@"/[]:;|=,+*?<>. ')
    assert login == stem
    # An account this job does not manage (another OU, no employeeID) holds nothing yet;
    # the first person gets the login, the second one the numbered form.
    t = make(unique={"sAMAccountName": "sAMAccountName"}, unique_base=BASE)
    first = user("910001", "Una", "Unique", sAMAccountName=login)
    second = user("910002", "Uno", "Unique", sAMAccountName=login)
    results = t.apply([create("910001", first), create("910002", second)])
    assert all(r.ok for r in results), [r.error for r in results]
    conn.search(ou, "(employeeID=91000*)", attributes=["sAMAccountName", "employeeID"])
    got = {
        e["attributes"]["employeeID"][0]: str(e["attributes"]["sAMAccountName"][0])
        for e in conn.response
        if e.get("type") == "searchResEntry"
    }
    assert got == {"910001": stem, "910002": stem[:19] + "2"}, (stem, got)
    assert "sAMAccountName " + stem + " is taken: " + stem[:19] + "2" in results[1].detail
    again = t.apply(
        [
            update("910001", first, results[0].target_id),
            update("910002", second, results[1].target_id),
        ]
    )
    assert all(r.ok and "already up to date" in r.detail for r in again), again
