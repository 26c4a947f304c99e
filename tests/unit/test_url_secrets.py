"""A password written into a URL is refused and never echoed (issue 9 item 5).

``?password=`` in a SQL or state URL used to pass validate and then show up in
connection errors; ``ldap://user:PW@host`` was refused with PW in the message.
"""

from __future__ import annotations

import textwrap

import pytest

from syncd.config import load_config
from syncd.errors import ConfigError
from syncd.state.store import safe_url

PW = "hunter2sekrit"

MAPPING = "version: 1\nkey: entryUUID\nfields:\n  name: cn\n"


def _problems(tmp_path, text: str) -> str:
    (tmp_path / "m.yaml").write_text(MAPPING)
    path = tmp_path / "syncd.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return "\n".join(info.value.problems)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://syncd@db.example.com/syncd?password={PW}",
        f"sqlite:///state.db?password={PW}",
        f"postgresql+psycopg://syncd@db/syncd?sslmode=require&sslpassword={PW}",
        f"postgresql+psycopg://syncd:{PW}@db/syncd",
    ],
)
def test_state_url_with_a_password_is_refused_without_echo(tmp_path, url):
    out = _problems(tmp_path, f"version: 1\nstate: {{url: '{url}'}}\n")
    assert "state.url" in out and "password" in out
    assert PW not in out


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://inv@db/inventory?password={PW}",
        f"sqlite:///inv.db?passwd={PW}",
        f"postgresql+psycopg://inv:{PW}@db/inventory",
    ],
)
def test_sql_connection_url_with_a_password_is_refused_without_echo(tmp_path, url):
    out = _problems(tmp_path, f"version: 1\nconnections:\n  db: {{type: sql, url: '{url}'}}\n")
    assert "connections.db.url" in out and "password" in out
    assert PW not in out


@pytest.mark.parametrize(
    ("kind", "option", "url"),
    [
        ("ldap", "url", f"ldap://admin:{PW}@ldap.example.com"),
        ("ldap", "url", f"ldaps://ldap.example.com:{PW}"),
        ("carddav", "url", f"https://alice:{PW}@dav.example.com/"),
        ("exchange", "endpoint", f"https://alice:{PW}@mail.example.com/EWS/Exchange.asmx"),
    ],
)
def test_connector_urls_with_credentials_are_refused_without_echo(tmp_path, kind, option, url):
    out = _problems(
        tmp_path, f"version: 1\nconnections:\n  c: {{type: {kind}, {option}: '{url}'}}\n"
    )
    assert f"connections.c.{option}" in out
    assert PW not in out


def test_redact_url_masks_user_password_and_secret_query_values():
    from syncd.urls import redact_url

    shown = redact_url(f"postgresql+psycopg://u:{PW}@h:5432/db?sslmode=require&password={PW}")
    assert PW not in shown
    assert shown.startswith("postgresql+psycopg://u:***@h:5432/db?")
    assert "sslmode=require" in shown and "password=***" in shown


def test_state_store_messages_mask_a_query_password():
    assert PW not in safe_url(f"postgresql+psycopg://u@h/db?password={PW}")
