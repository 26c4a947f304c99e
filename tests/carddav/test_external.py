"""Edits made outside syncd (another CardDAV client), hand-added cards, replays."""

from __future__ import annotations

import logging

import pytest

from tests.carddav.conftest import create, delete, ok, update
from tests.servers.fixtures_radicale import book_path

pytestmark = pytest.mark.radicale


class OtherClient:
    """Someone editing the address book with another CardDAV client (plain httpx)."""

    def __init__(self, server, book: str):
        self.server = server
        self.path = book_path(server, book)

    def get(self, name: str) -> tuple[str, str]:
        with self.server.client() as c:
            resp = c.get(self.path + name)
            assert resp.status_code == 200, resp.status_code
            return resp.text, resp.headers["etag"]

    def put(self, name: str, text: str, etag: str | None = None) -> str:
        headers = {"Content-Type": "text/vcard; charset=utf-8"}
        if etag:
            headers["If-Match"] = etag
        with self.server.client() as c:
            resp = c.put(self.path + name, content=text.encode(), headers=headers)
            assert resp.status_code in (201, 204), (resp.status_code, resp.text)
            return resp.headers["etag"]

    def edit_fn(self, name: str, new_fn: str) -> None:
        """Change FN the way a client would: everything else (X-SYNCD-*) kept."""
        text, etag = self.get(name)
        lines = [f"FN:{new_fn}" if ln.startswith("FN:") else ln for ln in text.split("\r\n")]
        self.put(name, "\r\n".join(lines), etag)

    def remove(self, name: str) -> None:
        with self.server.client() as c:
            assert c.delete(self.path + name).status_code in (200, 204)


@pytest.fixture
def other(radicale_server, carddav_book):
    return OtherClient(radicale_server, carddav_book)


def test_external_edit_is_reported_and_overwritten(make_target, cards, other, caplog):
    target = make_target()
    (res,) = ok(target.apply([create("e-1", fn="Original", email="e1@example.com")]))
    other.edit_fn("syncd-e-1.vcf", "Edited by hand")
    assert cards()["e-1"].fn.value == "Edited by hand"

    # noticed through the listing of a newly opened target (sync-collection)
    fresh = make_target()
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.carddav.target"):
        (r2,) = ok(fresh.apply([update("e-1", res.target_id, fn="From directory")]))
    assert r2.detail == "overwrote a change made outside syncd"
    assert "changed outside syncd" in caplog.text and "e-1" in caplog.text
    assert cards()["e-1"].fn.value == "From directory"

    # noticed by a 412 on a target that listed the book before the edit
    other.edit_fn("syncd-e-1.vcf", "Edited again")
    (r3,) = ok(fresh.apply([update("e-1", r2.target_id, fn="Directory again")]))
    assert r3.detail == "overwrote a change made outside syncd"
    assert cards()["e-1"].fn.value == "Directory again"

    # and a later normal update is quiet again: one PUT
    puts = fresh.stats.get("PUT", 0)
    (r4,) = ok(fresh.apply([update("e-1", r3.target_id, fn="Quiet")]))
    assert r4.detail is None and fresh.stats["PUT"] == puts + 1


def test_external_edit_kept(make_target, cards, other):
    target = make_target(on_external_edit="keep")
    (res,) = ok(target.apply([create("k-1", fn="Original"), create("k-2", fn="Untouched")])[:1])
    other.edit_fn("syncd-k-1.vcf", "Mine now")
    fresh = make_target(on_external_edit="keep")
    (r2,) = ok(fresh.apply([update("k-1", res.target_id, fn="Directory says")]))
    assert r2.detail == "kept a change made outside syncd (on_external_edit: keep)"
    assert cards()["k-1"].fn.value == "Mine now"
    # the next update keeps it too (the target id still carries syncd's last ETag)
    (r3,) = ok(fresh.apply([update("k-1", r2.target_id, fn="Directory insists")]))
    assert "kept" in r3.detail and cards()["k-1"].fn.value == "Mine now"
    # and a delete leaves the edited card where it is
    (r4,) = ok(fresh.apply([delete("k-1", r3.target_id)]))
    assert r4.detail == "not deleted: changed outside syncd (on_external_edit: keep)"
    assert sorted(cards()) == ["k-1", "k-2"]


def test_card_deleted_outside_is_recreated(make_target, cards, other):
    target = make_target()
    (res,) = ok(target.apply([create("gone-1", fn="Here")]))
    other.remove("syncd-gone-1.vcf")
    (r2,) = ok(make_target().apply([update("gone-1", res.target_id, fn="Back")]))
    assert r2.detail == "re-created: the card had been deleted outside syncd"
    assert cards()["gone-1"].fn.value == "Back"
    # a delete of a card someone already deleted is fine
    other.remove("syncd-gone-1.vcf")
    (r3,) = ok(target.apply([delete("gone-1", r2.target_id)]))
    assert r3.detail == "already gone"


HAND = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{fn}\r\nN:;{fn};;;\r\nEND:VCARD\r\n"


def test_hand_added_cards_survive(make_target, cards, raw_cards, other):
    make_target()  # creates the book
    other.put("hand-1.vcf", HAND.format(uid="hand-uid", fn="Hand made"))
    # a card at a name syncd would use, but not written by syncd (no X-SYNCD-KEY)
    other.put("syncd-victim.vcf", HAND.format(uid="victim", fn="Victim"))
    before = {h: t for h, t in raw_cards().items() if "hand-1" in h or "victim" in h}
    assert len(before) == 2

    fresh = make_target()
    res = fresh.apply(
        [
            create("s-1", fn="Synced one"),
            create("hand-uid", fn="Same UID as the hand card"),  # Radicale: UID conflict
            create("victim", fn="Would overwrite"),
            delete("hand-uid", None),
            delete("victim", None),
        ]
    )
    assert [r.ok for r in res] == [True, False, False, True, True]
    assert "did not write" in res[2].error
    assert res[3].detail == "already gone"
    assert res[4].detail == "not deleted: syncd-victim.vcf is not a card syncd wrote for this key"
    ok(fresh.apply([update("s-1", res[0].target_id, fn="Synced again")]))
    ok(fresh.apply([delete("s-1", None)]))  # without target id: found by key, deleted
    after = {h: t for h, t in raw_cards().items() if "hand-1" in h or "victim" in h}
    assert after == before
    assert sorted(cards()) == ["hand-uid", "victim"]


def test_replayed_batch_is_not_an_external_edit(make_target, cards, caplog):
    target = make_target(on_external_edit="keep")
    (c,) = ok(target.apply([create("r-1", fn="A")]))
    first_update = update("r-1", c.target_id, fn="B")
    ok(target.apply([first_update]))
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.carddav.target"):
        # the engine crashed before committing: the same update again (stale ETag)
        (again,) = ok(make_target(on_external_edit="keep").apply([first_update]))
        assert again.detail == "already up to date"
        # a newer change from the stale state: written, not kept
        (newer,) = ok(target.apply([update("r-1", c.target_id, fn="C")]))
        assert newer.detail is None
    assert "outside syncd" not in caplog.text
    assert cards()["r-1"].fn.value == "C"


def test_create_of_existing_card_after_state_loss(make_target, cards):
    target = make_target()
    ok(target.apply([create("sl-1", fn="Before loss")]))
    fresh = make_target()
    (r,) = ok(fresh.apply([create("sl-1", fn="After loss")]))
    assert r.detail is None and cards()["sl-1"].fn.value == "After loss"
    # the listing told the target the card exists: no failed If-None-Match PUT
    assert fresh.stats["PUT"] == 1 and fresh.stats["REPORT"] == 2  # listing + multiget


def test_changed_outside_from_the_listing(make_target, other):
    target = make_target()
    res = ok(target.apply([create(k, fn=k) for k in ("co-1", "co-2", "co-3")]))
    ids = [r.target_id for r in res]
    other.edit_fn("syncd-co-2.vcf", "Edited")
    other.remove("syncd-co-3.vcf")
    fresh = make_target()
    requests = sum(fresh.stats.values())
    assert fresh.changed_outside(ids) == {ids[1]: "changed", ids[2]: "deleted"}
    assert sum(fresh.stats.values()) == requests  # from the listing: no request


def test_races_after_open_are_answered_by_412_and_404(make_target, cards, other):
    a = make_target()  # lists the empty book
    b = make_target()
    ok(b.apply([create("race-1", fn="Written by b"), create("race-2", fn="Doomed")]))
    # a does not know race-1 exists: If-None-Match fails (412), a reads it, sees syncd's
    # own card for that key, and updates it
    puts = a.stats.get("PUT", 0)
    ok(a.apply([create("race-1", fn="Written by a")]))
    assert a.stats["PUT"] == puts + 2 and a.stats["GET"] == 1
    assert cards()["race-1"].fn.value == "Written by a"
    # a card deleted after the listing: DELETE answers 404, which is fine
    fresh = make_target()
    ok(b.apply([delete("race-2", None)]))
    other_ids = fresh.etags
    assert "syncd-race-2.vcf" in other_ids
    target_id = f"{fresh.book_path}syncd-race-2.vcf {other_ids['syncd-race-2.vcf']}"
    ok(fresh.apply([delete("race-2", target_id)]))
    assert fresh.stats["DELETE"] == 1
    assert sorted(cards()) == ["race-1"]
