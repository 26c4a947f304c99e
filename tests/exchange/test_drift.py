"""Exchange drift: a synced contact deleted by hand in the mailbox is re-created by the
next complete run (the owned items are listed by one paged FindItem on syncd's tag)."""

from __future__ import annotations

import pytest

from syncd.engine import run_job
from tests.exchange.test_e2e_ldap import FOLDER, PEOPLE, book, by_name  # noqa: F401

pytestmark = pytest.mark.slapd


def test_contacts_deleted_by_hand_come_back_on_a_complete_run(book, slapd, ews_server):  # noqa: F811
    people = [
        f"dn: uid=p{n:03d},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: p{n:03d}\n"
        f"cn: Person {n:03d}\ngivenName: Person\nsn: {n:03d}\nmail: p{n}@example.com\n"
        for n in range(130)  # more than one FindItem page (100)
    ]
    slapd.add("\n".join(people))
    rep = run_job(book, "people")
    assert rep.status == "ok" and rep.counts["created"] == 130, rep.error
    gone = {"Person 007", "Person 129"}
    for item in ews_server.items_in(FOLDER):
        if ews_server.item_dict(item)["DisplayName"] in gone:
            del ews_server.items[item.id]
    assert len(by_name(ews_server)) == 128

    assert run_job(book, "people").counts["updated"] == 0, "not complete: state trusted"
    dry = run_job(book, "people", apply=False, full=True)
    try:
        assert dry.counts.get("update") == 2
        assert any("target drift: 2 missing" in n for n in dry.notes), dry.notes
    finally:
        dry.plan.close()
    rep = run_job(book, "people", full=True)
    assert rep.status == "ok" and rep.counts["updated"] == 2, rep.error
    assert len(by_name(ews_server)) == 130
    assert by_name(ews_server)["Person 129"]["Surname"] == "129"
    assert run_job(book, "people", full=True).counts["updated"] == 0
