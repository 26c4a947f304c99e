"""Logging: JSON lines under systemd, text on a terminal, a level of its own for changes,
no secrets."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from syncd.logsetup import choose_format, mask_url_passwords, setup_logging
from syncd.secrets import SecretRef


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    changes = logging.getLogger("syncd.changes").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("syncd.changes").setLevel(changes)


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_with_extra_fields_and_exceptions():
    buf = io.StringIO()
    setup_logging("json", "INFO", stream=buf)
    log = logging.getLogger("syncd.test")
    log.info("run of %s done", "inventory", extra={"job": "inventory", "changes": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke")
    first, second = _lines(buf)
    assert first["msg"] == "run of inventory done" and first["level"] == "INFO"
    assert first["logger"] == "syncd.test" and first["job"] == "inventory"
    assert first["changes"] == 3 and first["ts"].endswith("+00:00")
    assert "ValueError: boom" in second["exc"]


def test_changes_logger_has_its_own_level():
    buf = io.StringIO()
    setup_logging("json", "WARNING", change_log_level="INFO", stream=buf)
    logging.getLogger("syncd.engine").info("not shown")
    logging.getLogger("syncd.changes").info("create cn=a key=1")
    assert [r["msg"] for r in _lines(buf)] == ["create cn=a key=1"]

    buf2 = io.StringIO()
    setup_logging("json", "INFO", change_log_level="WARNING", stream=buf2)
    logging.getLogger("syncd.changes").info("hidden change")
    logging.getLogger("syncd.engine").info("shown")
    assert [r["msg"] for r in _lines(buf2)] == ["shown"]
    # A second set-up replaced the first handler instead of adding one.
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_syncd_handler", False)]
    assert len(ours) == 1


def test_secrets_never_appear():
    buf = io.StringIO()
    setup_logging("json", "INFO", stream=buf)
    os.environ["SYNCD_TEST_SECRET"] = "hunter2-very-secret"
    try:
        ref = SecretRef(env="SYNCD_TEST_SECRET")
        logging.getLogger("syncd.test").info(
            "binding with %s to %s", ref, "postgresql://u:hunter2-very-secret@db/x"
        )
        logging.getLogger("syncd.test").info("password is %r", ref)
    finally:
        del os.environ["SYNCD_TEST_SECRET"]
    text = buf.getvalue()
    assert "hunter2" not in text
    assert "environment variable SYNCD_TEST_SECRET" in text
    assert "postgresql://u:***@db/x" in text


def test_mask_url_passwords():
    assert mask_url_passwords("ldaps://cn=a:pw@host") == "ldaps://cn=a:***@host"
    assert mask_url_passwords("see https://host:8443/path") == "see https://host:8443/path"
    assert (
        mask_url_passwords("postgresql+psycopg://syncd@h/db") == "postgresql+psycopg://syncd@h/db"
    )


def test_auto_picks_json_under_systemd_and_text_on_a_terminal(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    master, slave = os.openpty()
    tty = os.fdopen(slave, "w")
    try:
        assert choose_format("auto", tty) == "text"
        assert choose_format("auto", io.StringIO()) == "json"  # not a terminal
        # $JOURNAL_STREAM of another stream (inherited from a service) does not count...
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        assert choose_format("auto", tty) == "text"
        # ...the device:inode of this very stream does: it is the journal.
        st = os.fstat(tty.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert choose_format("auto", tty) == "json"
        assert choose_format("text", io.StringIO()) == "text"
        with pytest.raises(ValueError, match="unknown log format"):
            choose_format("xml")
    finally:
        tty.close()
        os.close(master)


def test_text_format_is_readable():
    buf = io.StringIO()
    setup_logging("text", "INFO", stream=buf)
    logging.getLogger("syncd.daemon").info("scheduling 2 job(s)")
    out = buf.getvalue()
    assert "INFO" in out and "syncd.daemon: scheduling 2 job(s)" in out
    assert not out.lstrip().startswith("{")


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("json", "LOUD", stream=io.StringIO())


def test_authorization_headers_are_masked():
    from syncd.logsetup import mask_url_passwords

    for text, secret in [
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("{'Authorization': 'NTLM TlRMTVNTUAAB', 'X': 1}", "TlRMTVNTUAAB"),
        ("proxy-authorization=Bearer eyJhbGc.x.y rest", "eyJhbGc.x.y"),
    ]:
        masked = mask_url_passwords(text)
        assert secret not in masked and "***" in masked, masked
