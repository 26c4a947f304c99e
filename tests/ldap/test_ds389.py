"""Every change method, and ``auto``, against a real 389 Directory Server.

389-ds differs from OpenLDAP where it matters for deletes and identity:

* its Content Synchronization plugin ends an incremental refresh with a Sync Done that
  says nothing about deletes (refreshDeletes absent = FALSE), although it never runs a
  present phase: such a refresh must not count as a complete listing;
* the Sync State control names entries by nsUniqueId (as a 16-byte UUID), not by
  entryUUID, so every method must use that one identity on 389-ds;
* changed entries of an incremental refresh come back with all user attributes and no
  operational ones (no entryUUID, nsUniqueId, modifyTimestamp), whatever was asked.
"""

from __future__ import annotations

import json
import uuid

import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions
from syncd.contracts import Op
from syncd.errors import SourceError
from tests.ldap.conftest import person_ldif, read_all

pytestmark = pytest.mark.ds389

ATTRS = ["cn", "sn", "uid", "entryUUID"]


@pytest.fixture
def pw_file(tmp_path, ds389):
    path = tmp_path / "dm.pw"
    path.write_text(ds389.root_pw + "\n")
    return path


def source(ds389, pw_file, base, **opts) -> LdapSource:
    opts.setdefault("filter", "(objectClass=inetOrgPerson)")
    opts.setdefault("attributes", ATTRS)
    cfg = LdapConnection.model_validate(
        {
            "url": ds389.url,
            "start_tls": False,
            "bind_dn": ds389.root_dn,
            "password": {"file": str(pw_file)},
        }
    )
    return LdapSource(cfg, LdapSourceOptions.model_validate({"base": base, **opts}), job="t")


def people(ds389, base, n) -> None:
    ds389.add("".join(person_ldif(i, base) for i in range(n)))


def unique_ids(ds389, base) -> dict[str, str]:
    """dn -> nsUniqueId in UUID form, straight from ldapsearch."""
    out = ds389.ldap(
        "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", base, "(uid=*)", "nsUniqueId"
    )
    ids, dn = {}, None
    for line in out.stdout.splitlines():
        if line.startswith("dn: "):
            dn = line[4:]
        elif line.lower().startswith("nsuniqueid: "):
            ids[dn] = str(uuid.UUID(hex=line.split(": ", 1)[1].replace("-", "")))
    return ids


def test_incremental_refresh_after_a_modify_is_not_a_complete_listing(ds389, ds389_ou, pw_file):
    people(ds389, ds389_ou, 6)
    src = source(ds389, pw_file, ds389_ou, changes="syncrepl")
    first, read = read_all(src)
    assert len(first) == 6 and read.outcome.complete is True

    dn = f"uid=p000002,{ds389_ou}"
    ds389.modify(f"dn: {dn}\nchangetype: modify\nreplace: cn\ncn: Changed\n")
    changes, read2 = read_all(src, read.outcome.cursor)
    # Only the modified entry: before the fix this refresh counted as complete, so the
    # engine planned 5 deletes out of 6.
    assert read2.outcome.complete is False
    assert [c.op for c in changes] == [Op.UPSERT]
    (change,) = changes
    assert change.source_id == {c.dn: c.source_id for c in first}[dn]
    # The attributes asked for (entryUUID among them) are there, as in a full read.
    full_entry = next(c for c in first if c.dn == dn)
    assert set(change.attributes) == set(full_entry.attributes)
    assert change.attributes["entryuuid"] == full_entry.attributes["entryuuid"]
    assert change.attributes["cn"] == ["Changed"]


def test_incremental_refresh_reports_a_delete_by_the_same_id(ds389, ds389_ou, pw_file):
    people(ds389, ds389_ou, 4)
    src = source(ds389, pw_file, ds389_ou, changes="syncrepl")
    first, read = read_all(src)
    ids = {c.dn: c.source_id for c in first}
    gone = f"uid=p000001,{ds389_ou}"
    ds389.delete(gone)
    ds389.add(person_ldif(50, ds389_ou))
    changes, read2 = read_all(src, read.outcome.cursor)
    assert read2.outcome.complete is False
    deletes = [c.source_id for c in changes if c.op is Op.DELETE]
    upserts = [c for c in changes if c.op is Op.UPSERT]
    assert deletes == [ids[gone]]
    assert [c.attributes["uid"] for c in upserts] == [["p000050"]]
    assert upserts[0].source_id == unique_ids(ds389, ds389_ou)[f"uid=p000050,{ds389_ou}"]


@pytest.mark.parametrize("method", ["full", "timestamp", "syncrepl", "auto"])
def test_every_method_names_entries_by_nsuniqueid(ds389, ds389_ou, pw_file, method):
    people(ds389, ds389_ou, 3)
    changes, read = read_all(source(ds389, pw_file, ds389_ou, changes=method))
    assert {c.dn: c.source_id for c in changes} == unique_ids(ds389, ds389_ou)
    assert read.outcome.complete is True
    if method == "auto":
        assert read.outcome.method == "syncrepl"


def test_auto_after_timestamp_changes_no_id(ds389, ds389_ou, pw_file):
    """A method switch re-reads everything; the ids must not move (else every object
    would be deleted and created again, or quarantined as a duplicate key)."""
    people(ds389, ds389_ou, 3)
    ts_changes, ts_read = read_all(source(ds389, pw_file, ds389_ou, changes="timestamp"))
    auto = source(ds389, pw_file, ds389_ou, changes="auto")
    changes, read = read_all(auto, ts_read.outcome.cursor)
    assert read.outcome.method == "syncrepl"
    assert any("stored cursor is for timestamp" in n for n in read.outcome.notes)
    assert {c.source_id: c.attributes for c in changes} == {
        c.source_id: c.attributes for c in ts_changes
    }


def test_syncrepl_with_entryuuid_as_id_is_refused_on_389ds(ds389, ds389_ou, pw_file):
    src = source(ds389, pw_file, ds389_ou, changes="syncrepl", id_attribute="entryUUID")
    with pytest.raises(SourceError, match="nsUniqueId"):
        read_all(src)


def test_cursor_names_the_method(ds389, ds389_ou, pw_file):
    people(ds389, ds389_ou, 1)
    _, read = read_all(source(ds389, pw_file, ds389_ou))
    assert json.loads(read.outcome.cursor)["method"] == "syncrepl"


def test_read_entries_finds_an_entry_by_its_source_id(ds389, ds389_ou, pw_file):
    """`syncd sync JOB --only ID` / `explain`: the UUID-form id finds the entry."""
    people(ds389, ds389_ou, 2)
    src = source(ds389, pw_file, ds389_ou)
    first, _ = read_all(src)
    wanted = first[1]
    read = src.read_entries([wanted.source_id])
    got = list(read.changes)
    assert [(c.source_id, c.dn) for c in got] == [(wanted.source_id, wanted.dn)]
