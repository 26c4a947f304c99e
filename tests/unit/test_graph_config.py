"""Graph connection and target options: one credential, https only, one scope."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.connectors.graph import GraphConnection, GraphTargetOptions

BASE = {"tenant_id": "t", "client_id": "c"}


def test_exactly_one_credential():
    GraphConnection.model_validate({**BASE, "client_secret": {"env": "X"}})
    with pytest.raises(ValidationError, match="exactly one of client_secret, certificate"):
        GraphConnection.model_validate(BASE)
    with pytest.raises(ValidationError, match="exactly one"):
        GraphConnection.model_validate(
            {
                **BASE,
                "client_secret": {"env": "X"},
                "certificate": {"private_key": {"env": "K"}, "thumbprint": "A" * 40},
            }
        )


def test_secret_inline_and_plain_http_are_refused():
    with pytest.raises(ValidationError, match="secrets may not be written"):
        GraphConnection.model_validate({**BASE, "client_secret": "hunter2"})
    with pytest.raises(ValidationError, match="https"):
        GraphConnection.model_validate(
            {**BASE, "client_secret": {"env": "X"}, "graph_url": "http://graph.example/v1.0"}
        )


def test_concurrency_cannot_exceed_exchange_online_limit():
    with pytest.raises(ValidationError):
        GraphConnection.model_validate({**BASE, "client_secret": {"env": "X"}, "concurrency": 5})


def test_target_needs_one_scope_and_batches_of_at_most_20():
    assert GraphTargetOptions.model_validate({"mailbox": "a@x"}).batch_size == 20
    with pytest.raises(ValidationError, match="exactly one of mailbox, mailboxes, group"):
        GraphTargetOptions.model_validate({"mailbox": "a@x", "group": "g@x"})
    with pytest.raises(ValidationError):
        GraphTargetOptions.model_validate({"mailbox": "a@x", "batch_size": 21})
