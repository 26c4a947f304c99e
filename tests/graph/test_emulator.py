"""The Graph emulator enforces the limits the target must respect, so a target that
broke them would fail its tests: 20 requests per batch, 4 concurrent requests per
mailbox, 4 MB per request, bearer tokens, expiring delta links."""

from __future__ import annotations

import ssl

import httpx
import pytest

from syncd.connectors.graph.auth import TokenSource
from tests.servers.fixtures_graph import MAILBOX, graph_connection


@pytest.fixture
def http(graph_server, tmp_path):
    tok = TokenSource(graph_connection(graph_server, tmp_path)).token()
    client = httpx.Client(
        base_url=graph_server.graph_url,
        verify=ssl.create_default_context(cafile=graph_server.tls["ca"]),
        headers={"Authorization": f"Bearer {tok}"},
    )
    yield client
    client.close()


def _folder(http) -> str:
    r = http.post(f"/users/{MAILBOX}/contactFolders", json={"displayName": "F"})
    assert r.status_code == 201
    return r.json()["id"]


def _create(fid: str, n: int, **extra) -> dict:
    return {
        "id": str(n),
        "method": "POST",
        "url": f"/users/{MAILBOX}/contactFolders/{fid}/contacts",
        "body": {"displayName": f"n{n}"},
        "headers": {"Content-Type": "application/json"},
        **extra,
    }


def test_batch_of_21_is_refused(http):
    fid = _folder(http)
    r = http.post("/$batch", json={"requests": [_create(fid, n) for n in range(21)]})
    assert r.status_code == 400


def test_independent_requests_beyond_4_per_mailbox_get_429(http, graph_server):
    fid = _folder(http)
    r = http.post("/$batch", json={"requests": [_create(fid, n) for n in range(20)]})
    statuses = [x["status"] for x in r.json()["responses"]]
    assert statuses.count(201) == 4 and statuses.count(429) == 16
    assert graph_server.violations


def test_dependson_chains_stay_within_the_limit(http, graph_server):
    fid = _folder(http)
    reqs = [_create(fid, n) for n in range(20)]
    for n in range(4, 20):
        reqs[n]["dependsOn"] = [str(n - 4)]
    r = http.post("/$batch", json={"requests": reqs})
    assert [x["status"] for x in r.json()["responses"]] == [201] * 20
    assert graph_server.violations == []


def test_request_over_4_mb_is_refused(http):
    fid = _folder(http)
    big = {"displayName": "x", "personalNotes": "y" * (4 * 1024 * 1024)}
    r = http.post(f"/users/{MAILBOX}/contactFolders/{fid}/contacts", json=big)
    assert r.status_code == 413


def test_no_token_no_answer(graph_server, http):
    r = httpx.get(
        f"{graph_server.graph_url}/users/{MAILBOX}",
        verify=ssl.create_default_context(cafile=graph_server.tls["ca"]),
    )
    assert r.status_code == 401


def test_delta_links_expire_with_410(http, graph_server):
    fid = _folder(http)
    http.post(f"/users/{MAILBOX}/contactFolders/{fid}/contacts", json={"displayName": "a"})
    first = http.get(f"/users/{MAILBOX}/contactFolders/{fid}/contacts/delta").json()
    link = first["@odata.deltaLink"]
    assert [c["displayName"] for c in first["value"]] == ["a"]
    assert http.get(link).json()["value"] == []
    graph_server.expire_delta_tokens()
    assert http.get(link).status_code == 410
