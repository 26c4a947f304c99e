"""DirSync and uSNChanged change tracking against a real Samba AD DC.

Each test works in its own OU of the session's DC (see tests/ad/conftest.py). Reads see
the whole naming context, so objects other tests touch can show up as deletes of ids
this test never listed ("changed outside the scope"); the assertions therefore look at
upserts exactly and at deletes of the ids this test knows, which is what the engine
acts on.
"""

from __future__ import annotations

import base64
import json
import time

import ldap3
import pytest

from syncd.connectors.ldap import ad
from syncd.contracts import Op
from syncd.errors import ConfigError, SourceError
from tests.ad.conftest import collect, cursor_of, deletes, options, upserts

pytestmark = pytest.mark.samba

READERS = {"dirsync": ad.read_dirsync, "usn": ad.read_usn}
METHODS = sorted(READERS)


@pytest.fixture
def conn(samba_dc):
    c = samba_dc.connection(fresh=True)
    yield c
    c.unbind()


def full_read(conn, method, opts):
    read = READERS[method](conn, opts, None, full=False)
    changes = collect(read)
    assert read.outcome.complete is True
    assert read.outcome.method == method
    return changes, cursor_of(read)


@pytest.mark.parametrize("method", METHODS)
def test_full_then_incremental(samba_dc, tree, conn, method):
    opts = options(tree.staff)
    changes, cursor = full_read(conn, method, opts)
    g = tree.guids
    assert set(upserts(changes)) == {g["alice"], g["bob"], g["carol"], g["pc1"], g["team"]}
    assert not deletes(changes)
    team = upserts(changes)[g["team"]]
    assert sorted(team.attributes["member"]) == sorted([tree.dns["alice"], tree.dns["bob"]])
    assert upserts(changes)[g["alice"]].attributes["description"] == ["alice v1"]
    assert cursor["method"] == method and cursor["v"] == 1

    # Nothing changed: nothing of ours comes back.
    read = READERS[method](conn, opts, cursor, full=False)
    quiet = collect(read)
    assert read.outcome.complete is False
    assert not upserts(quiet)
    listed = set(upserts(changes))  # what the engine has synced: deletes of others are no-ops
    assert not deletes(quiet) & listed
    cursor = cursor_of(read)

    # Add, modify, move within the scope, move out of it, delete, change a group.
    tag = tree.dns["alice"].split(",", 1)[0].split("-", 1)[1]
    erin = samba_dc.add_user(tree.staff, f"erin-{tag}", description="erin v1")
    g["erin"] = samba_dc.guid(erin)
    samba_dc.modify(tree.dns["alice"], description="alice v2")
    sub = samba_dc.add_ou("moved", tree.staff)
    bob = samba_dc.move(tree.dns["bob"], sub)
    carol = samba_dc.move(tree.dns["carol"], tree.other)
    samba_dc.delete(tree.dns["pc1"])
    samba_dc.add_members(tree.dns["team"], erin)
    samba_dc.remove_members(tree.dns["team"], tree.dns["alice"])
    samba_dc.modify(tree.dns["dave"], description="outside the scope")

    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    assert read.outcome.complete is False
    up = upserts(changes)
    assert set(up) == {g["erin"], g["alice"], g["bob"], g["team"]}
    assert up[g["alice"]].attributes["description"] == ["alice v2"]
    assert up[g["alice"]].dn == tree.dns["alice"]
    assert up[g["bob"]].dn == bob  # moved: same id, new DN
    assert up[g["erin"]].attributes["description"] == ["erin v1"]
    assert sorted(up[g["team"]].attributes["member"]) == sorted([bob, erin])
    # Upserts are complete entries, not just the changed attributes.
    assert up[g["alice"]].attributes["samaccountname"]
    assert "user" in up[g["alice"]].attributes["objectclass"]
    assert isinstance(up[g["alice"]].attributes["objectguid"][0], bytes)
    known = listed | {g["erin"]}
    assert deletes(changes) & known == {g["pc1"], g["carol"]}
    assert g["dave"] not in up  # changed, but never in scope: no upsert
    if method == "dirsync":  # DirSync knows dave was not moved: not even a no-op delete
        assert g["dave"] not in deletes(changes)
    carol_delete = next(c for c in changes if c.op is Op.DELETE and c.source_id == g["carol"])
    assert carol_delete.dn.lower() == carol.lower()
    assert read.outcome.notes  # counts for the run record

    # And the next read is quiet again.
    read = READERS[method](conn, opts, cursor_of(read), full=False)
    again = collect(read)
    assert not upserts(again)
    assert not deletes(again) & known


@pytest.mark.parametrize("method", METHODS)
def test_rename_and_filter_leave(samba_dc, tree, conn, method):
    opts = options(tree.staff, filter="(&(objectClass=user)(!(description=retired)))")
    _, cursor = full_read(conn, method, opts)
    g = tree.guids
    renamed = samba_dc.rename(tree.dns["alice"], "CN=alice-renamed-" + g["alice"][:6])
    samba_dc.modify(tree.dns["bob"], description="retired")  # leaves the filter
    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    up = upserts(changes)
    assert set(up) == {g["alice"]}
    assert up[g["alice"]].dn == renamed
    assert up[g["alice"]].attributes["cn"] == ["alice-renamed-" + g["alice"][:6]]
    assert deletes(changes) & set(g.values()) == {g["bob"]}


@pytest.mark.parametrize("method", METHODS)
def test_changed_invocation_id_means_full_resync(tree, conn, method):
    opts = options(tree.staff)
    _, cursor = full_read(conn, method, opts)
    cursor["invocation_id"] = "00000000-0000-0000-0000-000000000001"
    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    assert read.outcome.complete is True
    assert len(upserts(changes)) == 5
    assert any("invocationId" in n and "full resync" in n for n in read.outcome.notes)
    # The new cursor carries the real identity again and is trusted.
    fresh = cursor_of(read)
    assert fresh["invocation_id"] != cursor["invocation_id"]
    read = READERS[method](conn, opts, fresh, full=False)
    collect(read)
    assert read.outcome.complete is False


@pytest.mark.parametrize("method", METHODS)
def test_other_dc_means_full_resync(tree, conn, method):
    opts = options(tree.staff)
    _, cursor = full_read(conn, method, opts)
    cursor["server"] = cursor["server"].replace("CN=DC1,", "CN=DC2,")
    read = READERS[method](conn, opts, cursor, full=False)
    collect(read)
    assert read.outcome.complete is True
    assert any("different domain controller" in n for n in read.outcome.notes)


@pytest.mark.parametrize("method", METHODS)
def test_invalid_cursor_means_full_resync(tree, conn, method):
    opts = options(tree.staff)
    _, cursor = full_read(conn, method, opts)
    broken = dict(cursor)
    if method == "dirsync":
        broken["cookie"] = "not base64 at all!"
    else:
        broken["usn"] = "abc"
    for bad in (broken, {"v": 1}, "garbage", {"v": 99, "method": method}):
        read = READERS[method](conn, opts, bad, full=False)
        assert len(upserts(collect(read))) == 5
        assert read.outcome.complete is True
        assert any("full resync" in n for n in read.outcome.notes), read.outcome.notes


def test_dirsync_cookie_refused_by_the_server(tree, conn):
    opts = options(tree.staff)
    _, cursor = full_read(conn, "dirsync", opts)
    cursor["cookie"] = base64.b64encode(b"garbage cookie").decode()
    read = ad.read_dirsync(conn, opts, cursor, full=False)
    changes = collect(read)
    assert read.outcome.complete is True
    assert len(upserts(changes)) == 5
    assert any("refused the DirSync cookie" in n for n in read.outcome.notes)


def test_usn_cursor_above_the_dcs_usn(tree, conn):
    opts = options(tree.staff)
    _, cursor = full_read(conn, "usn", opts)
    cursor["usn"] += 10_000_000
    read = ad.read_usn(conn, opts, cursor, full=False)
    collect(read)
    assert read.outcome.complete is True
    assert any("above the DC's highest USN" in n for n in read.outcome.notes)


@pytest.mark.parametrize("method", METHODS)
def test_cursor_older_than_tombstone_lifetime(tree, conn, method):
    opts = options(tree.staff)
    _, cursor = full_read(conn, method, opts)
    cursor["time"] = int(time.time()) - 90 * 86400  # Samba's lifetime is 180 days
    read = READERS[method](conn, opts, cursor, full=False)
    collect(read)
    assert read.outcome.complete is False
    cursor["time"] = int(time.time()) - 200 * 86400
    read = READERS[method](conn, opts, cursor, full=False)
    collect(read)
    assert read.outcome.complete is True
    assert any("tombstone lifetime (180 days)" in n for n in read.outcome.notes)


@pytest.mark.parametrize("method", METHODS)
def test_changed_scope_means_full_resync(tree, conn, method):
    _, cursor = full_read(conn, method, options(tree.staff))
    read = READERS[method](conn, options(tree.root), cursor, full=False)
    changes = collect(read)
    assert read.outcome.complete is True
    assert tree.guids["dave"] in upserts(changes)  # dave is in the wider scope
    assert any("filter or attributes changed" in n for n in read.outcome.notes)


@pytest.mark.parametrize("method", METHODS)
def test_full_flag_ignores_a_good_cursor(tree, conn, method):
    opts = options(tree.staff)
    _, cursor = full_read(conn, method, opts)
    read = READERS[method](conn, opts, cursor, full=True)
    assert len(upserts(collect(read))) == 5
    assert read.outcome.complete is True


@pytest.mark.parametrize("method", METHODS)
def test_scope_one_level(samba_dc, tree, conn, method):
    sub = samba_dc.add_ou("deeper", tree.staff)
    deep = samba_dc.add_user(sub, "deep-" + tree.guids["alice"][:8])
    opts = options(tree.staff, scope="one")
    changes, cursor = full_read(conn, method, opts)
    assert samba_dc.guid(deep) not in upserts(changes)
    assert len(upserts(changes)) == 5
    samba_dc.modify(deep, description="changed")
    samba_dc.move(tree.dns["alice"], sub)  # one level down: out of a one-level scope
    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    assert not upserts(changes)
    assert tree.guids["alice"] in deletes(changes)


@pytest.mark.parametrize("method", METHODS)
def test_id_attribute_must_be_objectguid(tree, conn, method):
    with pytest.raises(ConfigError, match="objectGUID"):
        READERS[method](conn, options(tree.staff, id_attribute="sAMAccountName"), None, full=True)


@pytest.mark.parametrize("method", METHODS)
def test_base_outside_the_naming_contexts(conn, method):
    with pytest.raises(ConfigError, match="naming context"):
        READERS[method](conn, options("OU=x,DC=elsewhere,DC=org"), None, full=True)


@pytest.mark.parametrize("method", METHODS)
def test_missing_base_is_a_failed_read(samba_ou, conn, method):
    read = READERS[method](conn, options("OU=missing," + samba_ou), None, full=True)
    with pytest.raises(SourceError, match="does not exist"):
        collect(read)
    assert read.outcome is None


def test_cursor_is_json_tied_to_the_server(samba_dc, tree, conn):
    _, cursor = full_read(conn, "usn", options(tree.staff))
    root = samba_dc.root_dse()
    assert cursor["server"] == root["dsServiceName"][0]
    assert int(cursor["usn"]) <= samba_dc.highest_usn()
    assert len(cursor["invocation_id"]) == 36
    json.dumps(cursor)  # plain JSON types only


@pytest.mark.parametrize("method", METHODS)
def test_reads_are_paged_and_streamed(tree, conn, method, monkeypatch):
    from syncd.connectors.ldap import wire

    searches: list[tuple[str, list[str]]] = []
    real = wire.search

    def counting(conn, base, filter, scope="sub", attributes=None, controls=(), **kw):
        searches.append((filter, [c[0] for c in controls]))
        return real(conn, base, filter, scope, attributes, controls, **kw)

    monkeypatch.setattr(wire, "search", counting)
    opts = options(tree.staff, page_size=2)
    read = READERS[method](conn, opts, None, full=False)
    first = next(read.changes)
    listing = [s for s in searches if s[0] == opts.filter]
    assert len(listing) == 1  # the first change arrives before page 2 is asked for
    assert wire.OID_PAGED in listing[0][1]
    rest = list(read.changes)
    assert len(upserts([first, *rest])) == 5
    assert len([s for s in searches if s[0] == opts.filter]) == 3  # 2 + 2 + 1
    cursor = cursor_of(read)

    # Incremental reads page too (5 changed objects, pages of 2).
    for name in ("alice", "bob", "carol", "pc1", "team"):
        conn.modify(tree.dns[name], {"description": [(ldap3.MODIFY_REPLACE, [f"{name} v3"])]})
    searches.clear()
    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    assert len(upserts(changes)) == 5
    assert all(c.attributes["description"][0].endswith("v3") for c in upserts(changes).values())
    paged = [s for s in searches if wire.OID_PAGED in s[1]]
    assert len(paged) >= 3, searches


@pytest.mark.parametrize("method", METHODS)
def test_moved_and_renamed_containers_carry_their_children(samba_dc, tree, conn, method):
    tag = tree.guids["alice"][:8]
    leaving = samba_dc.add_ou("leaving", tree.staff)
    x = samba_dc.add_user(leaving, f"x-{tag}")
    y = samba_dc.add_user(leaving, f"y-{tag}")
    paris = samba_dc.add_ou("paris", tree.staff)
    w = samba_dc.add_user(paris, f"w-{tag}")
    coming = samba_dc.add_ou("coming", tree.other)
    z = samba_dc.add_user(coming, f"z-{tag}")
    opts = options(tree.staff)
    changes, cursor = full_read(conn, method, opts)
    listed = set(upserts(changes))
    guids = {n: samba_dc.guid(dn) for n, dn in {"x": x, "y": y, "w": w, "z": z}.items()}
    assert {guids["x"], guids["y"], guids["w"]} <= listed
    assert guids["z"] not in listed

    samba_dc.move(leaving, tree.other)  # x and y leave the scope with their OU
    nord = samba_dc.rename(paris, "OU=paris-nord")  # w gets a new DN
    arrived = samba_dc.move(coming, tree.staff)  # z enters the scope with its OU

    read = READERS[method](conn, opts, cursor, full=False)
    changes = collect(read)
    up = upserts(changes)
    assert set(up) == {guids["w"], guids["z"]}
    assert up[guids["w"]].dn == f"CN=w-{tag},{nord}"
    assert up[guids["z"]].dn == f"CN=z-{tag},{arrived}"
    assert deletes(changes) & (listed | {guids["z"]}) == {guids["x"], guids["y"]}
    assert any("below 3 moved or renamed containers" in n for n in read.outcome.notes), (
        read.outcome.notes
    )

    # Quiet afterwards.
    read = READERS[method](conn, opts, cursor_of(read), full=False)
    again = collect(read)
    assert not upserts(again)


def test_dc_restart_keeps_cursors_valid(samba_dc, tree):
    opts = options(tree.staff)
    conn = samba_dc.connection(fresh=True)
    cursors = {m: full_read(conn, m, opts)[1] for m in METHODS}
    conn.unbind()
    samba_dc.restart()
    samba_dc.modify(tree.dns["carol"], description="after restart")
    conn = samba_dc.connection(fresh=True)
    for method in METHODS:
        read = READERS[method](conn, opts, cursors[method], full=False)
        changes = collect(read)
        assert read.outcome.complete is False, read.outcome.notes
        assert set(upserts(changes)) == {tree.guids["carol"]}
    conn.unbind()
