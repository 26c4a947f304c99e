"""An ordinary account under a size limit: syncrepl reads unpaged, so ``changes: auto``
falls back to a paged method and says so; a forced ``syncrepl`` keeps failing clearly;
a size limit hit by the paged read is still a failed read, never a short one.

The bind DN is uid=reader (not the rootdn: slapd ignores limits on it, and a
``limits`` clause naming the rootdn makes slapd exit, see FACTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.contracts import Op
from syncd.errors import SourceError
from tests.ldap.conftest import PEOPLE, make_source, people_ldif, read_all
from tests.servers.slapd import BASE, Slapd

pytestmark = pytest.mark.slapd

READER = f"uid=reader,{BASE}"
READER_PW = "reader-pw"
READER_LDIF = f"""dn: {READER}
objectClass: account
objectClass: simpleSecurityObject
uid: reader
userPassword: {READER_PW}
"""


def limited(tmp_path, limits: str):
    return Slapd(tmp_path / "slapd", ldif=READER_LDIF + "\n" + people_ldif(20), limits=limits)


@pytest.fixture
def reader_pw(tmp_path) -> Path:
    path = tmp_path / "reader.pw"
    path.write_text(READER_PW + "\n")
    return path


class AsReader:
    def __init__(self, server):
        self.url, self.root_dn = server.url, READER


@pytest.fixture
def limit10(tmp_path):
    """Unpaged searches of uid=reader stop at 10 entries; paged ones are unlimited."""
    line = f'limits dn.exact="{READER}" size=10 size.pr=unlimited size.prtotal=unlimited'
    with limited(tmp_path, line) as server:
        yield server


def reader_source(server, pw, **kw):
    kw.setdefault("filter", "(objectClass=inetOrgPerson)")
    return make_source(AsReader(server), pw, **kw)


def test_auto_falls_back_to_a_paged_method_and_says_so(limit10, reader_pw):
    source = reader_source(limit10, reader_pw, changes="auto", page_size=5)
    changes, read = read_all(source)
    out = read.outcome
    ids = [c.source_id for c in changes]
    assert len(ids) == 20 and len(set(ids)) == 20, "every entry once, none twice"
    assert all(c.op is Op.UPSERT for c in changes)
    assert out.method == "timestamp" and out.complete is True
    assert any(
        "syncrepl refused by size limit: falling back to timestamp" in n for n in out.notes
    ), out.notes

    # The next run goes straight to the paged method (no doomed syncrepl first), is
    # incremental, and says why.
    limit10.modify(f"dn: uid=p000003,{PEOPLE}\nchangetype: modify\nreplace: cn\ncn: New\n")
    changes2, read2 = read_all(source, out.cursor)
    assert read2.outcome.method == "timestamp" and read2.outcome.complete is False
    # (entries inside the overlap window come again: the fallback forgot that window)
    changed = {c.dn: c.attributes["cn"] for c in changes2}
    assert changed[f"uid=p000003,{PEOPLE}"] == ["New"]
    assert any("size limit at an earlier run" in n for n in read2.outcome.notes)
    assert not any("falling back" in n for n in read2.outcome.notes), read2.outcome.notes
    assert json.loads(read2.outcome.cursor)["method"] == "timestamp"


def test_a_full_read_retries_syncrepl(limit10, reader_pw):
    source = reader_source(limit10, reader_pw, changes="auto", page_size=5)
    _, read = read_all(source)
    _, again = read_all(source, read.outcome.cursor, full=True)
    assert again.outcome.method == "timestamp" and again.outcome.complete is True
    # syncrepl was tried again (and refused again), not skipped
    assert any("falling back to timestamp" in n for n in again.outcome.notes), again.outcome.notes


def test_forced_syncrepl_keeps_failing_clearly(limit10, reader_pw):
    source = reader_source(limit10, reader_pw, changes="syncrepl")
    read = source.read(None)
    with pytest.raises(SourceError, match="size limit") as err:
        list(read.changes)
    assert "syncrepl" in str(err.value) and "changes: auto" in str(err.value)
    assert read.outcome is None


def test_a_size_limit_in_the_paged_fallback_is_a_failed_read(tmp_path, reader_pw):
    line = f'limits dn.exact="{READER}" size=10 size.pr=5 size.prtotal=12'
    with limited(tmp_path, line) as server:
        read = reader_source(server, reader_pw, changes="auto", page_size=5).read(None)
        with pytest.raises(SourceError, match=r"^search hit the server's size limit"):
            list(read.changes)
        assert read.outcome is None
