"""read_deadline: a server that trickles its answer (each receive well within
``timeout``) cannot keep a read, and the job lock, alive: the read fails with a clear
error once the deadline has passed, and nothing of it counts as complete."""

from __future__ import annotations

import pytest

from syncd.connectors.ldap.source import LdapSourceOptions
from syncd.errors import SourceError
from tests.ldap.conftest import make_source, people_ldif
from tests.servers.slapd import Slapd
from tests.servers.trickle import TrickleProxy

pytestmark = pytest.mark.slapd


@pytest.fixture
def dir200(tmp_path):
    with Slapd(tmp_path / "slapd", ldif=people_ldif(200)) as server:
        yield server


class Via:
    """``server`` as seen through a proxy (same DNs and password, another URL)."""

    def __init__(self, server, url):
        self.url, self.root_dn, self.root_pw = url, server.root_dn, server.root_pw


@pytest.mark.parametrize("method", ["full", "syncrepl"])
def test_a_trickling_server_fails_the_read_at_the_deadline(dir200, root_pw_file, method):
    # 64 bytes every 50 ms: about 30 s for the whole answer; every receive takes 50 ms,
    # far below the 5 s socket timeout. The proxy cuts the connection after 15 s.
    with TrickleProxy(("127.0.0.1", dir200.port), chunk=64, interval=0.05) as proxy:
        source = make_source(
            Via(dir200, proxy.url),
            root_pw_file,
            conn_kw={"timeout": 5},
            changes=method,
            read_deadline=2,
        )
        read = source.read(None)
        with pytest.raises(SourceError, match=r"read_deadline \(2 s\)") as err:
            list(read.changes)
        assert "nothing from it counts as complete" in str(err.value)
        assert read.outcome is None


def test_read_deadline_accepts_durations_and_has_a_default():
    assert LdapSourceOptions(base="dc=x").read_deadline == 3600
    assert LdapSourceOptions(base="dc=x", read_deadline="2h").read_deadline == 7200
    with pytest.raises(ValueError):
        LdapSourceOptions(base="dc=x", read_deadline=0)
