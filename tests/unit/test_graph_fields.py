"""Pure logic of the Graph connector: record -> contact payload, the digest that tells
syncd's writes from hand edits, and the split of batches by count and size."""

from __future__ import annotations

import pytest

from syncd.connectors.graph import fields as F
from syncd.connectors.graph.client import MAX_REQUEST_BYTES, SubRequest, split


def test_payload_and_digest_survive_graphs_normalisation():
    rec = {"display_name": "Zoë", "email_addresses": ["Z@Example.com"], "business_city": "Köln"}
    body = F.payload(rec)
    stored = F.digest_value(body, F.managed(rec))
    # Graph answers e-mail addresses with a name, empty properties as null / {}
    answer = {
        **body,
        "emailAddresses": [{"name": "Zoë", "address": "z@example.com"}],
        "homeAddress": {},
        "jobTitle": None,
    }
    assert not F.edited_by_hand(answer, stored)
    assert F.edited_by_hand({**answer, "displayName": "Zoe"}, stored)
    assert F.edited_by_hand({**answer, "businessAddress": {"city": "Bonn"}}, stored)
    assert F.edited_by_hand(answer, None)  # no digest: not known as syncd's write


def test_unmanaged_properties_are_not_hand_edits():
    rec = {"display_name": "A"}
    stored = F.digest_value(F.payload(rec), F.managed(rec))
    assert not F.edited_by_hand({"displayName": "A", "homePhones": ["+1"]}, stored)


def test_bad_records():
    with pytest.raises(F.FieldProblem, match="display_name"):
        F.payload({"display_name": " "})
    with pytest.raises(F.FieldProblem, match="shoe_size"):
        F.payload({"display_name": "A", "shoe_size": 1})
    with pytest.raises(F.FieldProblem, match="bytes"):
        F.photo_of({"photo": "not bytes"})


def test_phones_merge_and_emails_keep_three():
    body = F.payload(
        {
            "display_name": "A",
            "business_phone": "+1",
            "business_phones": ["+1", "+2"],
            "email_addresses": ["a@x", "b@x", "c@x", "d@x"],
        }
    )
    assert body["businessPhones"] == ["+1", "+2"]
    assert [e["address"] for e in body["emailAddresses"]] == ["a@x", "b@x", "c@x"]


def test_split_by_count_and_size():
    small = [SubRequest("POST", "u", {"a": 1}) for _ in range(45)]
    assert [len(p) for p in split(list(range(45)), small, 20)] == [20, 20, 5]
    big = [SubRequest("PUT", "u", b"x" * (1024 * 1024)) for _ in range(7)]
    parts = split(list(range(7)), big, 20)
    assert all(sum(big[i].size() for i in p) < MAX_REQUEST_BYTES for p in parts)
    assert sum(len(p) for p in parts) == 7 and len(parts) == 4  # 2 x 1.4 MB base64 each
