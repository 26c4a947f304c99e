"""Fixtures for the Active Directory tests: one Samba AD DC per test session.

* ``samba_dc``: a started DC (see :class:`tests.servers.samba.SambaDC`), shared by the
  whole session because provisioning and start take seconds. Tests must not depend on
  the rest of the directory: each works in its own OU (``samba_ou``).
* ``samba_ou``: a fresh, uniquely named OU under the domain for one test.
"""

from __future__ import annotations

import uuid

import pytest

from tests.servers.samba import SambaDC, ensure_template, samba_available


@pytest.fixture(scope="session")
def samba_template():
    if not samba_available():
        pytest.fail("Samba is not installed: run scripts/install.d/30-samba.sh")
    return ensure_template()


@pytest.fixture(scope="session")
def samba_dc(samba_template, tmp_path_factory):
    """A running Samba AD DC for the session (base DC=example,DC=test)."""
    with SambaDC(tmp_path_factory.mktemp("samba") / "dc", samba_template) as dc:
        yield dc


@pytest.fixture
def samba_ou(samba_dc):
    """A new OU for one test, e.g. ``OU=t-1a2b3c4d,DC=example,DC=test``."""
    return samba_dc.add_ou(f"t-{uuid.uuid4().hex[:8]}")
