"""The timestamp change method against a real slapd: watermark, overlap de-dup,
deletes found by the periodic full scan."""

from __future__ import annotations

import json
import time

import pytest

from syncd.connectors.ldap.timestamp import (
    format_generalized_time,
    parse_generalized_time,
    since_filter,
)
from syncd.contracts import Op
from tests.ldap.conftest import PEOPLE, make_source, people_ldif, person_ldif, read_all
from tests.servers.slapd import Slapd

pytestmark = pytest.mark.slapd


@pytest.fixture
def dir20(tmp_path):
    with Slapd(tmp_path / "slapd", ldif=people_ldif(20)) as server:
        yield server


def ts_source(server, pw, **kw):
    kw.setdefault("filter", "(objectClass=inetOrgPerson)")
    kw.setdefault("full_every", 3600)
    return make_source(server, pw, changes="timestamp", **kw)


def uids(changes):
    return sorted(c.attributes["uid"][0] for c in changes)


def test_incremental_reads_only_what_changed(dir20, root_pw_file):
    source = ts_source(dir20, root_pw_file, attributes=["uid", "cn"])
    first, read = read_all(source)
    assert len(first) == 20 and read.outcome.complete is True
    assert read.outcome.method == "timestamp"
    assert all("modifytimestamp" not in c.attributes for c in first)  # not asked for
    cursor = json.loads(read.outcome.cursor)
    assert parse_generalized_time(cursor["watermark"]) is not None

    dir20.modify(f"dn: uid=p000003,{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: One\n")
    dir20.add(person_ldif(100))
    changes, read2 = read_all(source, read.outcome.cursor)
    # Every entry is inside the 60 s overlap window, yet only the two changes come back.
    assert uids(changes) == ["p000003", "p000100"]
    assert read2.outcome.complete is False
    assert any("already seen" in n for n in read2.outcome.notes)

    # A second change within the same second as the first is not lost to de-duplication.
    dir20.modify(f"dn: uid=p000003,{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: Two\n")
    changes, read3 = read_all(source, read2.outcome.cursor)
    assert [(c.attributes["uid"], c.attributes["cn"]) for c in changes] == [(["p000003"], ["Two"])]
    nothing, _ = read_all(source, read3.outcome.cursor)
    assert nothing == []


def test_deletes_are_found_by_the_periodic_full_scan(dir20, root_pw_file):
    source = ts_source(dir20, root_pw_file)
    first, read = read_all(source)
    ids = {c.attributes["uid"][0]: c.source_id for c in first}
    dir20.delete(f"uid=p000005,{PEOPLE}")
    changes, read2 = read_all(source, read.outcome.cursor)
    assert changes == [] and read2.outcome.complete is False  # invisible to timestamps

    aged = json.loads(read2.outcome.cursor)
    aged["last_full"] = time.time() - 7200
    changes, read3 = read_all(source, json.dumps(aged))
    assert read3.outcome.complete is True
    assert any("periodic full" in n for n in read3.outcome.notes)
    listed = {c.source_id for c in changes if c.op is Op.UPSERT}
    assert ids["p000005"] not in listed and len(listed) == 19
    assert json.loads(read3.outcome.cursor)["last_full"] > aged["last_full"]


def test_timestamp_defaults_to_a_daily_full_scan(dir20, root_pw_file):
    source = make_source(dir20, root_pw_file, changes="timestamp")
    _, read = read_all(source)
    aged = json.loads(read.outcome.cursor)
    aged["last_full"] = time.time() - 86400 - 5
    _, read2 = read_all(source, json.dumps(aged))
    assert read2.outcome.complete is True
    aged["last_full"] = time.time() - 3600
    _, read3 = read_all(source, json.dumps(aged))
    assert read3.outcome.complete is False


def test_cursor_of_another_server_means_a_full_read(dir20, root_pw_file):
    source = ts_source(dir20, root_pw_file)
    _, read = read_all(source)
    moved = json.loads(read.outcome.cursor)
    moved["server"] = "ldap2.example.com:389"
    changes, read2 = read_all(source, json.dumps(moved))
    assert read2.outcome.complete is True and len(changes) == 20
    assert any("another server" in n for n in read2.outcome.notes)


def test_generalized_time_helpers():
    t = parse_generalized_time("20261128001736Z")
    assert format_generalized_time(t) == "20261128001736Z"
    assert parse_generalized_time("20261128001736.0Z") == t  # AD style
    assert parse_generalized_time(b"20261128021736+0200") == t
    assert parse_generalized_time("yesterday") is None
    assert since_filter("(uid=a)", t) == "(&(uid=a)(modifyTimestamp>=20261128001736Z))"


def test_seen_window_is_bounded(tmp_path, root_pw_file):
    from syncd.connectors.ldap import timestamp

    with Slapd(tmp_path / "slapd", ldif=people_ldif(30)) as server:
        source = ts_source(server, root_pw_file)
        old = timestamp.SEEN_LIMIT
        timestamp.SEEN_LIMIT = 10
        try:
            _, read = read_all(source)
        finally:
            timestamp.SEEN_LIMIT = old
        assert json.loads(read.outcome.cursor)["seen"] == {}
        # Without de-duplication data the overlap re-delivers; nothing is lost.
        again, _ = read_all(source, read.outcome.cursor)
        assert len(again) == 30
