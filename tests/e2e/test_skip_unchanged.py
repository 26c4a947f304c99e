"""Entries read again unchanged are not mapped again (entry digests in the state), yet
a changed entry, a changed mapping file, a mapping with look-ups, a state from before
entry digests and a verifying (--full) run still map what they must."""

from __future__ import annotations

import sqlite3

import pytest

from syncd.mapping.mapping import Mapping
from tests.e2e.conftest import MAPPING, device, write_config
from tests.e2e.test_inventory import load, rows


@pytest.fixture
def mapped(monkeypatch) -> list[str]:
    """Source ids the mapping is asked to map, in order (the real mapping still runs)."""
    calls: list[str] = []
    real = Mapping.map

    def counting(self, change, lookup=None):
        calls.append(change.source_id)
        return real(self, change, lookup)

    monkeypatch.setattr(Mapping, "map", counting)
    return calls


def sync(setup, *extra: str) -> str:
    return setup.syncd("sync", "inventory", "--no-progress", *extra).stdout


def three(setup) -> None:
    load(setup, device("pc-1", "SN-1"), device("pc-2", "SN-2"), device("pc-3", "SN-3"))


def test_unchanged_entries_are_not_mapped_changed_ones_are(inventory, mapped):
    three(inventory)
    assert "3 created" in sync(inventory)
    assert len(mapped) == 3
    mapped.clear()
    assert "nothing to change" in sync(inventory)
    assert mapped == [], "an unchanged entry was mapped again"

    inventory.slapd.modify(
        "dn: cn=pc-2,ou=devices,dc=example,dc=com\nchangetype: modify\nreplace: l\nl: Osaka\n"
    )
    out = sync(inventory)
    assert "1 updated" in out and len(mapped) == 1
    assert rows(inventory)["pc-2"]["location"] == "Osaka"
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []


def test_a_changed_mapping_file_maps_every_entry_again(inventory, mapped):
    three(inventory)
    sync(inventory)
    mapped.clear()
    (inventory.dir / "devices.yaml").write_text(
        MAPPING.replace("location: l", 'location: "{{ l | first | upper }}"')
    )
    out = sync(inventory)
    assert "3 updated" in out and len(mapped) == 3
    assert {r["location"] for r in rows(inventory).values()} == {"PARIS"}
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []


def test_a_mapping_with_lookups_maps_every_entry(inventory, mapped):
    # The looked-up objects may change while the entry does not: never skipped.
    (inventory.dir / "devices.yaml").write_text(
        MAPPING.replace(
            "fields:\n", "fields:\n  owner_id: \"{{ owner | lookup('people') | first }}\"\n"
        )
    )
    three(inventory)
    sync(inventory)
    mapped.clear()
    assert "nothing to change" in sync(inventory)
    assert len(mapped) == 3


def test_state_without_entry_digests_maps_once_then_skips(inventory, mapped):
    three(inventory)
    sync(inventory)
    con = sqlite3.connect(inventory.dir / "state.db")
    with con:  # as a state written before entry digests existed
        con.execute("UPDATE objects SET entry_digest = NULL")
    stamps = con.execute("SELECT source_id, updated_at FROM objects").fetchall()
    con.close()
    mapped.clear()
    assert "nothing to change" in sync(inventory) and len(mapped) == 3
    con = sqlite3.connect(inventory.dir / "state.db")
    try:
        digests = [d for (d,) in con.execute("SELECT entry_digest FROM objects")]
        # Learning the digest is no change of the record: updated_at (what jobs that
        # look members up here compare with) stays.
        assert con.execute("SELECT source_id, updated_at FROM objects").fetchall() == stamps
    finally:
        con.close()
    assert len(digests) == 3 and all(digests)
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []


def test_a_renamed_entry_is_mapped_and_its_new_dn_remembered(inventory, mapped):
    three(inventory)
    sync(inventory)
    inventory.slapd.add(
        "dn: ou=lab,ou=devices,dc=example,dc=com\nobjectClass: organizationalUnit\n"
    )
    inventory.slapd.modify(
        "dn: cn=pc-1,ou=devices,dc=example,dc=com\nchangetype: modrdn\nnewrdn: cn=pc-1\n"
        "deleteoldrdn: 1\nnewsuperior: ou=lab,ou=devices,dc=example,dc=com\n"
    )
    mapped.clear()
    sync(inventory)
    assert len(mapped) == 1
    con = sqlite3.connect(inventory.dir / "state.db")
    try:
        dns = {dn for (dn,) in con.execute("SELECT dn FROM objects")}
    finally:
        con.close()
    assert "cn=pc-1,ou=lab,ou=devices,dc=example,dc=com" in dns
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []


def test_a_verifying_full_run_maps_every_entry_and_repairs_the_target(inventory, mapped):
    three(inventory)
    sync(inventory)
    con = sqlite3.connect(inventory.dir / "inventory.db")
    with con:  # edited by hand in the target
        con.execute("UPDATE devices SET location = 'Mars' WHERE hostname = 'pc-3'")
    con.close()
    mapped.clear()
    sync(inventory, "--full")
    assert len(mapped) == 3
    assert rows(inventory)["pc-3"]["location"] == "Paris"


def test_a_changed_value_convention_maps_every_entry_again(inventory, mapped):
    """The same bytes read under another binary_attributes setting decode to other
    values: the raw-entry digests of the first read must not let them be skipped."""
    three(inventory)
    assert "3 created" in sync(inventory)
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []
    write_config(
        inventory.dir,
        inventory.slapd,
        inventory.db_url,
        source={"binary_attributes": ["description"]},
    )
    sync(inventory)
    assert sorted(mapped) == sorted(rows_ids(inventory)), "entries skipped under new settings"
    mapped.clear()
    assert "nothing to change" in sync(inventory) and mapped == []


def rows_ids(setup) -> list[str]:
    con = sqlite3.connect(setup.dir / "state.db")
    try:
        return [sid for (sid,) in con.execute("SELECT source_id FROM objects")]
    finally:
        con.close()


def test_a_read_that_saw_every_synced_object_looks_for_no_unseen_one(inventory, monkeypatch):
    """A complete read that listed every object of the state skips the pass over the
    state's ids; one that missed any (even with a new entry making the counts equal)
    still finds and deletes it."""
    from syncd.state.store import StateStore

    passes: list[str] = []
    real = StateStore.iter_source_ids

    def counting(self, job, **kw):
        passes.append(job)
        return real(self, job, **kw)

    monkeypatch.setattr(StateStore, "iter_source_ids", counting)
    three(inventory)
    sync(inventory)
    passes.clear()
    assert "nothing to change" in sync(inventory)
    assert passes == [], "every synced object was listed: nothing can be unseen"

    inventory.slapd.delete("cn=pc-3,ou=devices,dc=example,dc=com")
    load(inventory, device("pc-4", "SN-4"))  # three entries read again, three rows
    out = sync(inventory)
    assert "1 created" in out and "1 deleted" in out and passes == ["inventory"]
    assert set(rows(inventory)) == {"pc-1", "pc-2", "pc-4"}
    passes.clear()
    assert "nothing to change" in sync(inventory) and passes == []
