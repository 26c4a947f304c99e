"""Fixtures: a private slapd per test (``slapd``) and one with TLS (``slapd_tls``)."""

from __future__ import annotations

import pytest

from tests.servers.slapd import Slapd


@pytest.fixture
def slapd(tmp_path):
    """A fresh slapd with dc=example,dc=com and ou=people/devices/groups, on loopback."""
    with Slapd(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
def slapd_tls(tmp_path):
    """Like ``slapd`` but also on ldaps:// with a private CA (``.ca_file``)."""
    with Slapd(tmp_path / "slapd", tls=True) as server:
        yield server
