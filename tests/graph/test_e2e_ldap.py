"""The Microsoft 365 address book end to end: OpenLDAP people -> the shipped Graph
mapping -> engine -> GraphTarget -> Graph emulator. Hand edits and deletes in the
mailbox are found by the delta query and repaired; a run without changes costs one
delta request per mailbox. Asserts on the emulator's stored contacts and the state."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from syncd.config import load_config
from syncd.engine import run_job
from tests.servers.fixtures_graph import MAILBOX, write_secret

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = "ou=people,dc=example,dc=com"
FOLDER = "Company Directory"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake jpeg bytes \x00\xff"


def person_ldif(uid: str, given: str, sn: str, **extra: str) -> str:
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {sn}",
        f"givenName: {given}",
        f"sn: {sn}",
        f"mail: {uid}@example.com",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def book(tmp_path, slapd, graph_server):
    graph_server.add_mailbox("second@contoso.test")
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        "connections": {
            "directory": {
                "type": "ldap",
                "url": slapd.url,
                "start_tls": False,
                "bind_dn": slapd.root_dn,
                "password": write_secret(tmp_path, "ldap.pw", slapd.root_pw),
            },
            "m365": {
                "type": "graph",
                "tenant_id": graph_server.tenant,
                "client_id": graph_server.client_id,
                "client_secret": write_secret(tmp_path, "graph.pw", graph_server.client_secret),
                "authority_url": graph_server.authority_url,
                "graph_url": graph_server.graph_url,
                "ca_file": graph_server.tls["ca"],
            },
        },
        "jobs": {
            "people": {
                "source": {
                    "connection": "directory",
                    "base": PEOPLE,
                    "filter": "(objectClass=inetOrgPerson)",
                },
                "mapping": str(ROOT / "mappings" / "addressbook-graph-openldap.yaml"),
                "target": {
                    "connection": "m365",
                    "mailboxes": [MAILBOX, "second@contoso.test"],
                    "folder": FOLDER,
                },
                "max_deletes": 5,
            },
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def names(emu, box=MAILBOX) -> dict[str, dict]:
    return {c["displayName"]: c for c in emu.owned(box, FOLDER).values()}


def test_address_book_with_repairs(book, slapd, graph_server):
    photo_b64 = base64.b64encode(PHOTO).decode()
    slapd.add(
        person_ldif("jdoe", "Jürgen", "Döe", title="Engineer", telephoneNumber="+49 30 1111")
        + f"jpegPhoto:: {photo_b64}\n\n"
        + person_ldif("asmith", "Anna", "Smith", title="Sales Lead")
        + "\n"
        + person_ldif("bwong", "Bo", "Wong")
    )
    own = graph_server.add_own(MAILBOX, FOLDER, {"displayName": "My dentist"})

    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 3
    for box in (MAILBOX, "second@contoso.test"):
        got = names(graph_server, box)
        assert set(got) == {"Jürgen Döe", "Anna Smith", "Bo Wong"}
        assert got["Jürgen Döe"]["photo"] == PHOTO
        assert got["Jürgen Döe"]["businessPhones"] == ["+49 30 1111"]

    # Second run: the delta lists syncd's own writes; nothing counts as a hand edit.
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["drifted"] == 0 and rep.counts["updated"] == 0

    # A run without any change: one delta request per mailbox, nothing else.
    before = graph_server.graph_requests
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert graph_server.graph_requests - before == 2
    assert graph_server.operations["GET users/*/contactFolders/*/contacts/delta"] >= 2

    # Hand edit in one mailbox, hand delete in the other: both repaired.
    jd = names(graph_server)["Jürgen Döe"]
    graph_server.edit(MAILBOX, jd["id"], jobTitle="Hacked", displayName="Someone Else")
    bo = names(graph_server, "second@contoso.test")["Bo Wong"]
    graph_server.remove("second@contoso.test", bo["id"])
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["drifted"] == 2
    assert names(graph_server)["Jürgen Döe"]["jobTitle"] == "Engineer"
    assert "Someone Else" not in names(graph_server)
    assert "Bo Wong" in names(graph_server, "second@contoso.test")
    assert len(graph_server.owned("second@contoso.test", FOLDER)) == 3

    # The person's own contact in the same folder was never touched.
    mine = {c["id"]: c for c in graph_server.contacts(MAILBOX, FOLDER)}[own]
    assert mine["displayName"] == "My dentist" and mine["ext"] == {}

    # Delta links expire: a complete listing, no needless write.
    graph_server.expire_delta_tokens()
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert any("delta link expired" in n for n in rep.notes)
    assert rep.counts["updated"] == rep.counts["created"] == 0

    # A person leaves the directory: gone from both mailboxes.
    slapd.delete(f"uid=asmith,{PEOPLE}")
    rep = run_job(book, "people", full=True)
    assert rep.status == "ok", rep.error
    assert rep.counts["deleted"] == 1
    for box in (MAILBOX, "second@contoso.test"):
        assert set(names(graph_server, box)) == {"Jürgen Döe", "Bo Wong"}


def test_delta_links_are_kept_only_after_a_clean_run(book, slapd, graph_server):
    slapd.add(person_ldif("jdoe", "Jürgen", "Döe"))
    assert run_job(book, "people").status == "ok"
    store = book.open_state()
    try:  # folders just created: their first delta query is the next run's
        assert set(store.get_target_state("people")) == {
            f"folder:{MAILBOX}",
            "folder:second@contoso.test",
        }
    finally:
        store.close()
    assert run_job(book, "people").status == "ok"
    store = book.open_state()
    try:
        saved = store.get_target_state("people")
    finally:
        store.close()
    assert set(saved) == {
        f"delta:{MAILBOX}",
        "delta:second@contoso.test",
        f"folder:{MAILBOX}",
        "folder:second@contoso.test",
    }
    # dry run: the target is not asked, nothing is stored
    jd = names(graph_server)["Jürgen Döe"]
    graph_server.edit(MAILBOX, jd["id"], jobTitle="Hacked")
    plan = run_job(book, "people", apply=False)
    assert plan.status == "dry-run"
    store = book.open_state()
    try:
        assert store.get_target_state("people") == saved
    finally:
        store.close()


def test_only_run_leaves_hand_edits_for_the_next_full_run(book, slapd, graph_server):
    slapd.add(person_ldif("jdoe", "Jürgen", "Döe", title="Engineer"))
    assert run_job(book, "people").status == "ok"
    assert run_job(book, "people").status == "ok"  # first delta links
    jd = names(graph_server)["Jürgen Döe"]
    graph_server.edit(MAILBOX, jd["id"], jobTitle="Hacked")
    rep = run_job(book, "people", only=[f"uid=jdoe,{PEOPLE}"])
    assert rep.status == "ok", rep.error
    assert rep.counts["drifted"] == 0  # an --only run does not ask the target
    assert names(graph_server)["Jürgen Döe"]["jobTitle"] == "Hacked"
    rep = run_job(book, "people")
    assert rep.counts["drifted"] == 1
    assert names(graph_server)["Jürgen Döe"]["jobTitle"] == "Engineer"
