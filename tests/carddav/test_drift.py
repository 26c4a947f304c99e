"""Address-book drift: cards deleted or edited by hand in Radicale are found by a complete
run (``full=True``) from the listing the target makes anyway, and written again; cards
with syncd's name that no synced object claims are reported, never deleted."""

from __future__ import annotations

import pytest

from syncd.engine import run_job
from tests.carddav.test_e2e_ldap import PEOPLE, by_fn, config, person_ldif  # noqa: F401
from tests.servers.fixtures_radicale import book_path, read_cards

pytestmark = [pytest.mark.slapd, pytest.mark.radicale]


def test_cards_deleted_or_edited_by_hand_are_repaired(
    config,  # noqa: F811
    slapd,
    radicale_server,
    carddav_book,
):
    slapd.add(
        "\n".join(
            [
                person_ldif("jdoe", "Jürgen", "Döe", title="Engineer"),
                person_ldif("asmith", "Anna", "Smith", title="Sales Lead"),
                person_ldif("bwong", "Bo", "Wong"),
            ]
        )
    )
    assert run_job(config, "people").counts["created"] == 3
    path = book_path(radicale_server, carddav_book)
    cards = read_cards(radicale_server, path)
    by_name = {t.split("FN:")[1].split("\r\n")[0]: href for href, t in cards.items()}
    with radicale_server.client() as c:
        assert c.delete(by_name["Bo Wong"]).status_code in (200, 204)
        edited = cards[by_name["Anna Smith"]].replace("TITLE:Sales Lead", "TITLE:Hand edit")
        put = c.put(by_name["Anna Smith"], content=edited, headers={"Content-Type": "text/vcard"})
        assert put.status_code in (201, 204)
        orphan = (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:0d2c8a52-0000-4c5e-9d51-1b1c1c1c1c99\r\n"
            "FN:Left over\r\nN:;;;;\r\nX-SYNCD-KEY:0d2c8a52-0000-4c5e-9d51-1b1c1c1c1c99\r\n"
            "END:VCARD\r\n"
        )
        name = path + "syncd-0d2c8a52-0000-4c5e-9d51-1b1c1c1c1c99.vcf"
        assert c.put(name, content=orphan, headers={"Content-Type": "text/vcard"}).is_success

    # Not a complete run: the state is trusted, nothing happens.
    rep = run_job(config, "people")
    assert rep.counts["updated"] == rep.counts["created"] == 0

    dry = run_job(config, "people", apply=False, full=True)
    try:
        assert dry.counts.get("update") == 2
        assert any("1 edited, 1 missing, 1 orphaned" in n for n in dry.notes), dry.notes
    finally:
        dry.plan.close()

    rep = run_job(config, "people", full=True)
    assert rep.status == "ok", rep.error
    assert rep.counts["updated"] == 2 and rep.counts["deleted"] == 0
    got = by_fn(radicale_server, carddav_book)
    assert got["Bo Wong"].n.value.family == "Wong"
    assert got["Anna Smith"].title.value == "Sales Lead"
    assert "Left over" in got, "an orphan is reported, not deleted"
    rep = run_job(config, "people", full=True)
    assert rep.counts["updated"] == 0
    assert not any("edited" in n or "missing" in n for n in rep.notes), rep.notes
