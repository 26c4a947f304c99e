"""GraphTarget.drift() alone: delta and listing pages are followed (@odata.nextLink),
hand edits and deletes come back as keys, syncd's own writes and a person's own
contacts do not, and the delta link moves on."""

from __future__ import annotations

from syncd.contracts import Action, ActionKind
from tests.servers.fixtures_graph import MAILBOX

FOLDER = "Company Directory"


def create(n: int) -> Action:
    return Action(ActionKind.CREATE, f"s{n}", f"k{n}", {"display_name": f"P{n}", "job_title": "X"})


def test_paged_delta_and_listing_find_hand_changes(graph_server, make_graph_target):
    keys = {f"k{n}" for n in range(25)}
    t = make_graph_target(page_size=10)
    t.open()
    assert all(r.ok for r in t.apply([create(n) for n in range(25)]))
    t.close()

    t = make_graph_target(page_size=10)
    t.open()
    first = t.drift({}, lambda: iter(keys))
    assert first.keys == set()  # only syncd's own writes so far
    assert graph_server.operations["GET users/*/contactFolders/*/contacts/delta"] == 3, (
        graph_server.operations
    )
    assert graph_server.operations["GET users/*/contactFolders/*/contacts"] == 3
    link = first.values[f"delta:{MAILBOX}"]
    assert link and "deltatoken" in link
    t.close()

    owned = graph_server.owned(MAILBOX, FOLDER)
    graph_server.edit(MAILBOX, owned["k3"]["id"], jobTitle="Hacked")
    graph_server.remove(MAILBOX, owned["k4"]["id"])
    graph_server.add_own(MAILBOX, FOLDER, {"displayName": "Mine"})
    t = make_graph_target(page_size=10)
    t.open()
    second = t.drift(first.values, lambda: iter(keys))
    assert second.keys == {"k3", "k4"}
    assert second.values[f"delta:{MAILBOX}"] != link
    t.close()

    # nothing changed since: one delta request, no listing, no keys
    t = make_graph_target(page_size=10)
    t.open()
    before = graph_server.graph_requests
    third = t.drift(second.values, lambda: iter(()))
    assert third.keys == set()
    assert graph_server.graph_requests - before == 1


def test_track_changes_off_asks_nothing(graph_server, make_graph_target):
    t = make_graph_target(track_changes=False)
    t.open()
    before = graph_server.graph_requests
    assert t.drift({}, lambda: iter(())) is None
    assert graph_server.graph_requests == before
