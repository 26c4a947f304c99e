"""Adversarial review of the Exchange target, against the EWS emulator with the real
exchangelib client. Assertions read what the emulator stored or what was logged."""

from __future__ import annotations

import base64
import logging

import pytest

from syncd.contracts import Action, ActionKind

FOLDER = "Contacts/Company Directory"


def _create(key: str, **fields) -> Action:
    return Action(ActionKind.CREATE, source_id=f"src-{key}", key=key, fields=fields)


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_debug_logging_never_shows_the_password(ews_server, make_exchange_target, caplog, auth):
    """exchangelib logs every request's headers at DEBUG: Basic auth carries the
    password (base64), NTLM a crackable response. syncd's `--log-level debug` must not
    write them."""
    caplog.set_level(logging.DEBUG)
    target = make_exchange_target(
        auth=auth, username=f"EXAMPLE\\{ews_server.username}" if auth == "ntlm" else None
    )
    target.open()
    try:
        res = target.apply([_create("k1", display_name="Ann")])
        assert res[0].ok, res[0].error
    finally:
        target.close()
    secret = ews_server.password
    basic = base64.b64encode(f"{ews_server.username}:{secret}".encode()).decode()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Request headers" in text  # exchangelib did log its request details
    assert secret not in text
    assert basic not in text
    assert "TlRMTVNT" not in text  # base64 of "NTLMSSP": an NTLM handshake message
    assert "Authorization" not in text or "[redacted]" in text
