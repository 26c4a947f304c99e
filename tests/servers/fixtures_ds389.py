"""Fixtures for the 389 Directory Server tests: one instance per test session.

* ``ds389``: a started 389-ds (see :class:`tests.servers.ds389.Ds389`) with syncrepl
  (Content Synchronization) on, shared by the session because creating one takes seconds
  (the template is cached per machine; a copy starts in about 1 s). Tests must not
  depend on the rest of the directory: each works in its own OU (``ds389_ou``).
* ``ds389_ou``: a fresh, uniquely named OU under dc=example,dc=com for one test.
"""

from __future__ import annotations

import uuid

import pytest

from tests.servers.ds389 import Ds389, ds389_available, ensure_template


@pytest.fixture(scope="session")
def ds389_template():
    if not ds389_available():
        pytest.fail("389-ds is not installed: run scripts/install.d/50-389ds.sh")
    return ensure_template()


@pytest.fixture(scope="session")
def ds389(ds389_template, tmp_path_factory):
    """A running 389-ds for the session (base dc=example,dc=com, root cn=Directory Manager)."""
    with Ds389(tmp_path_factory.mktemp("ds389") / "ds", ds389_template) as server:
        yield server


@pytest.fixture
def ds389_ou(ds389):
    """A new OU for one test, e.g. ``ou=t-1a2b3c4d,dc=example,dc=com``."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    dn = f"ou={name},{ds389.base}"
    ds389.add(f"dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n")
    return dn
