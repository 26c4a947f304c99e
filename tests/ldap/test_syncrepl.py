"""syncrepl (RFC 4533 refreshOnly) reads against a real slapd with syncprov+accesslog."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc

import pytest

from syncd.contracts import Op
from syncd.errors import SourceError
from tests.ldap.conftest import PEOPLE, make_source, people_ldif, person_ldif, read_all
from tests.servers.slapd import Slapd

pytestmark = pytest.mark.slapd


@pytest.fixture
def dir20(tmp_path):
    with Slapd(tmp_path / "slapd", ldif=people_ldif(20)) as server:
        yield server


def syncrepl_source(server, pw, **kw):
    kw.setdefault("filter", "(objectClass=inetOrgPerson)")
    return make_source(server, pw, changes="syncrepl", **kw)


def by_op(changes):
    out = {Op.UPSERT: {}, Op.DELETE: {}, Op.PRESENT: {}}
    for c in changes:
        out[c.op][c.source_id] = c
    return out


def test_initial_refresh_is_complete_and_keyed_by_entryuuid(dir20, root_pw_file):
    changes, read = read_all(syncrepl_source(dir20, root_pw_file))
    assert len(changes) == 20 and all(c.op is Op.UPSERT for c in changes)
    assert all(c.attributes["entryuuid"] == [c.source_id] for c in changes)
    out = read.outcome
    assert out.complete is True and out.method == "syncrepl"
    cursor = json.loads(out.cursor)
    assert cursor["method"] == "syncrepl" and base64.b64decode(cursor["cookie"])
    assert cursor["server"].endswith(str(dir20.port))


def test_adds_modifies_modrdn_deletes_between_runs(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    first, read = read_all(source)
    ids = {c.dn: c.source_id for c in first}
    dir20.add(person_ldif(100) + person_ldif(101))
    dir20.modify(f"dn: uid=p000003,{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: Changed\n")
    dir20.ldap("ldapmodrdn", "-r", f"uid=p000004,{PEOPLE}", "uid=renamed4")
    dir20.delete(f"uid=p000005,{PEOPLE}", f"uid=p000006,{PEOPLE}")

    changes, read2 = read_all(source, read.outcome.cursor)
    ops = by_op(changes)
    assert read2.outcome.complete is False
    assert set(ops[Op.DELETE]) == {ids[f"uid=p00000{i},{PEOPLE}"] for i in (5, 6)}
    upserts = ops[Op.UPSERT]
    assert len(upserts) == 4
    assert upserts[ids[f"uid=p000003,{PEOPLE}"]].attributes["cn"] == ["Changed"]
    renamed = upserts[ids[f"uid=p000004,{PEOPLE}"]]  # same id, new DN
    assert renamed.dn == f"uid=renamed4,{PEOPLE}"
    assert renamed.attributes["uid"] == ["renamed4"]
    new = {c.attributes["uid"][0] for c in upserts.values()}
    assert {"p000100", "p000101"} <= new

    # Nothing changed since: no changes, and the cookie is kept.
    again, read3 = read_all(source, read2.outcome.cursor)
    assert again == []
    assert json.loads(read3.outcome.cursor)["cookie"] == json.loads(read2.outcome.cursor)["cookie"]
    assert read3.outcome.complete is False


def test_slapd_restart_between_runs_keeps_exact_deletes(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    first, read = read_all(source)
    ids = {c.dn: c.source_id for c in first}
    dir20.restart()
    dir20.delete(f"uid=p000010,{PEOPLE}")
    dir20.modify(f"dn: uid=p000011,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: After\n")
    dir20.restart()
    changes, read2 = read_all(source, read.outcome.cursor)
    ops = by_op(changes)
    assert set(ops[Op.DELETE]) == {ids[f"uid=p000010,{PEOPLE}"]}
    assert [c.attributes["sn"] for c in ops[Op.UPSERT].values()] == [["After"]]
    assert read2.outcome.complete is False


def cursor_with_cookie(cursor: str, cookie: bytes) -> str:
    data = json.loads(cursor)
    data["cookie"] = base64.b64encode(cookie).decode()
    return json.dumps(data)


def test_garbage_cookie_falls_back_to_a_full_refresh(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    _, read = read_all(source)
    dir20.delete(f"uid=p000001,{PEOPLE}")
    bad = cursor_with_cookie(read.outcome.cursor, b"garbage-cookie")
    changes, read2 = read_all(source, bad)
    out = read2.outcome
    assert out.complete is True  # deletes are found by comparison
    assert len([c for c in changes if c.op is Op.UPSERT]) == 19
    assert any("full refresh" in n for n in out.notes), out.notes
    # The next run gets a real cookie and is incremental again.
    _, read3 = read_all(source, out.cursor)
    dir20.delete(f"uid=p000002,{PEOPLE}")
    changes4, read4 = read_all(source, read3.outcome.cursor)
    assert [c.op for c in changes4] == [Op.DELETE]
    assert read4.outcome.complete is False


def test_stale_cookie_gives_a_complete_listing(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    first, read = read_all(source)
    stale = cursor_with_cookie(
        read.outcome.cursor, b"rid=000,sid=001,csn=20200101000000.000000Z#000000#000#000000"
    )
    dir20.delete(f"uid=p000001,{PEOPLE}")
    changes, read2 = read_all(source, stale)
    assert read2.outcome.complete is True
    listed = {c.source_id for c in changes if c.op in (Op.UPSERT, Op.PRESENT)}
    gone = {c.source_id for c in first} - listed
    assert len(listed) == 19 and len(gone) == 1
    assert any("full refresh" in n for n in read2.outcome.notes)


def test_full_every_forces_a_complete_refresh(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file, full_every=3600)
    _, read = read_all(source)
    data = json.loads(read.outcome.cursor)
    recent = read_all(source, read.outcome.cursor)[1]
    assert recent.outcome.complete is False
    data["last_full"] = time.time() - 7200
    changes, read2 = read_all(source, json.dumps(data))
    assert read2.outcome.complete is True and len(changes) == 20
    assert any("periodic full" in n for n in read2.outcome.notes)
    assert json.loads(read2.outcome.cursor)["last_full"] > data["last_full"]


def test_full_flag_and_foreign_cursor(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    _, read = read_all(source)
    changes, forced = read_all(source, read.outcome.cursor, full=True)
    assert forced.outcome.complete is True and len(changes) == 20
    other = json.dumps({"v": 1, "method": "timestamp", "watermark": "20260101000000Z"})
    changes, foreign = read_all(source, other)
    assert foreign.outcome.complete is True and len(changes) == 20
    assert any("not syncrepl" in n for n in foreign.outcome.notes)
    changes, broken = read_all(source, "{not json")
    assert broken.outcome.complete is True
    assert any("unreadable" in n for n in broken.outcome.notes)


def test_entry_leaving_the_filter(dir20, root_pw_file):
    source = syncrepl_source(
        dir20, root_pw_file, filter="(&(objectClass=inetOrgPerson)(sn=Number*))"
    )
    first, read = read_all(source)
    ids = {c.dn: c.source_id for c in first}
    dir20.modify(f"dn: uid=p000012,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: Other\n")
    changes, read2 = read_all(source, read.outcome.cursor)
    gone = ids[f"uid=p000012,{PEOPLE}"]
    # slapd's session log reports an entry that no longer matches as deleted.
    assert [(c.op, c.source_id) for c in changes] == [(Op.DELETE, gone)]
    assert read2.outcome.complete is False


def test_refresh_streams_without_holding_the_result(tmp_path, root_pw_file):
    n = 8000
    with Slapd(tmp_path / "slapd", ldif=people_ldif(n)) as server:
        source = syncrepl_source(server, root_pw_file)
        read = source.read(None)
        tracemalloc.start()
        try:
            count = 0
            for change in read.changes:
                count += 1
                del change
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == n and read.outcome.complete is True
    # Holding 8000 decoded entries costs well over 10 MB; streaming stays far below.
    assert peak < 4 * 1024 * 1024, peak


def test_syncrepl_size_limit_is_a_failed_read(tmp_path):
    # Anonymous is held to "sizelimit 500"; syncrepl is one unpaged search (slapd ends
    # a sync search combined with paging after one page, silently: never combine them).
    with Slapd(tmp_path / "slapd", ldif=people_ldif(1200)) as server:
        read = syncrepl_source(server, None).read(None)
        with pytest.raises(SourceError, match="size limit after 500 entries"):
            list(read.changes)
        assert read.outcome is None


def test_moves_and_group_membership(dir20, root_pw_file):
    dir20.add(
        "dn: cn=staff,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: staff\n"
        f"member: uid=p000001,{PEOPLE}\n"
    )
    source = make_source(
        dir20,
        root_pw_file,
        changes="syncrepl",
        base="dc=example,dc=com",
        filter="(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
    )
    first, read = read_all(source)
    ids = {c.dn: c.source_id for c in first}
    # A move to another OU inside the base: same id, new DN.
    dir20.ldap(
        "ldapmodrdn", "-s", "ou=devices,dc=example,dc=com", f"uid=p000002,{PEOPLE}", "uid=p000002"
    )
    dir20.modify(
        "dn: cn=staff,ou=groups,dc=example,dc=com\nchangetype: modify\n"
        f"add: member\nmember: uid=p000003,{PEOPLE}\n"
    )
    changes, read2 = read_all(source, read.outcome.cursor)
    ups = {c.source_id: c for c in changes if c.op is Op.UPSERT}
    assert set(ups) == {ids[f"uid=p000002,{PEOPLE}"], ids["cn=staff,ou=groups,dc=example,dc=com"]}
    assert ups[ids[f"uid=p000002,{PEOPLE}"]].dn == "uid=p000002,ou=devices,dc=example,dc=com"
    assert ups[ids["cn=staff,ou=groups,dc=example,dc=com"]].attributes["member"] == [
        f"uid=p000001,{PEOPLE}",
        f"uid=p000003,{PEOPLE}",
    ]
    assert read2.outcome.complete is False


def test_move_out_of_the_base_is_a_delete(dir20, root_pw_file):
    source = syncrepl_source(dir20, root_pw_file)
    first, read = read_all(source)
    ids = {c.dn: c.source_id for c in first}
    dir20.ldap(
        "ldapmodrdn", "-s", "ou=devices,dc=example,dc=com", f"uid=p000007,{PEOPLE}", "uid=p000007"
    )
    changes, _ = read_all(source, read.outcome.cursor)
    assert [(c.op, c.source_id) for c in changes] == [(Op.DELETE, ids[f"uid=p000007,{PEOPLE}"])]


class NoSessionlogSlapd(Slapd):
    """syncprov without a session log: deletes can only be told by a present phase."""

    def setup(self):
        super().setup()
        lines = self.conf.read_text().splitlines()
        self.conf.write_text("\n".join(ln for ln in lines if "sessionlog" not in ln) + "\n")


def test_present_phase_lists_every_live_entry(tmp_path, root_pw_file):
    with NoSessionlogSlapd(tmp_path / "slapd", ldif=people_ldif(20)) as server:
        source = syncrepl_source(server, root_pw_file)
        first, read = read_all(source)
        ids = {c.dn: c.source_id for c in first}
        server.delete(f"uid=p000008,{PEOPLE}")
        server.modify(f"dn: uid=p000009,{PEOPLE}\nchangetype: modify\nreplace: sn\nsn: New\n")
        changes, read2 = read_all(source, read.outcome.cursor)
        ops = by_op(changes)
        assert read2.outcome.complete is True  # absence from the listing = deleted
        listed = set(ops[Op.UPSERT]) | set(ops[Op.PRESENT])
        assert listed == set(ids.values()) - {ids[f"uid=p000008,{PEOPLE}"]}
        assert ops[Op.UPSERT][ids[f"uid=p000009,{PEOPLE}"]].attributes["sn"] == ["New"]
        assert len(ops[Op.PRESENT]) >= 18  # the 18 untouched entries at least
        assert all(not c.attributes for c in ops[Op.PRESENT].values())
        assert any("present phase" in n for n in read2.outcome.notes)


def test_connection_lost_mid_refresh_is_a_failed_read(tmp_path, root_pw_file):
    with Slapd(tmp_path / "slapd", ldif=people_ldif(30000)) as server:
        read = syncrepl_source(server, root_pw_file).read(None)
        next(read.changes)
        server.proc.kill()
        server.proc.wait()
        with pytest.raises(SourceError, match=r"lost|closed"):
            list(read.changes)
        assert read.outcome is None


class ReloadHintSlapd(Slapd):
    """syncprov with reload hints: a stale cookie is answered e-syncRefreshRequired."""

    def setup(self):
        super().setup()
        text = self.conf.read_text().replace(
            "syncprov-checkpoint 100 10", "syncprov-checkpoint 100 10\nsyncprov-reloadhint TRUE"
        )
        self.conf.write_text(text)


def test_refresh_required_falls_back_to_a_full_refresh(tmp_path, root_pw_file):
    with ReloadHintSlapd(tmp_path / "slapd", ldif=people_ldif(20)) as server:
        source = syncrepl_source(server, root_pw_file)
        first, read = read_all(source)
        ids = {c.dn: c.source_id for c in first}
        server.delete(f"uid=p000004,{PEOPLE}")
        stale = cursor_with_cookie(
            read.outcome.cursor, b"rid=000,csn=20200101000000.000000Z#000000#000#000000"
        )
        changes, read2 = read_all(source, stale)
        out = read2.outcome
        assert out.complete is True
        assert any("e-syncRefreshRequired" in n and "full refresh" in n for n in out.notes)
        listed = {c.source_id for c in changes if c.op is Op.UPSERT}
        assert listed == set(ids.values()) - {ids[f"uid=p000004,{PEOPLE}"]}
        # The fresh cookie works incrementally again.
        server.delete(f"uid=p000005,{PEOPLE}")
        changes3, read3 = read_all(source, out.cursor)
        assert [(c.op, c.source_id) for c in changes3] == [
            (Op.DELETE, ids[f"uid=p000005,{PEOPLE}"])
        ]
        assert read3.outcome.complete is False
