"""State store review: hostile values on PostgreSQL, URLs that must not leak."""

from __future__ import annotations

import pytest

from syncd.errors import ConfigError
from syncd.state import ObjectState, QuarantineEntry, StateStore


def test_nul_in_free_text_does_not_break_a_postgres_commit(postgres_url):
    """PostgreSQL text cannot hold NUL: a quarantine reason quoting a hostile value
    (or an error, a DN) must not make the job's whole commit fail every run."""
    with StateStore(postgres_url) as store:
        store.commit(
            "j",
            upserts=[ObjectState("E1", "E1", "t1", "fp", {"cn": "d"}, "cn=a\x00b,dc=x")],
            quarantined=[QuarantineEntry.new("j", "E2", None, "field 'cn': 'a\x00b' is bad")],
            cursor="c1",
        )
        rid = store.start_run("j", method="csv", node="n1")
        store.finish_run(rid, status="failed", counts={"read": 1}, error="bad\x00", notes=["n\x00"])
        [q] = store.quarantine("j")
        assert q.reason == "field 'cn': 'a\\x00b' is bad"
        assert store.objects_for("j", ["E1"])["E1"].dn == "cn=a\\x00b,dc=x"
        assert store.objects_by_dn("j", ["cn=a\x00b,dc=x"])["cn=a\x00b,dc=x"].key == "E1"
        [run] = store.runs("j")
        assert run.error == "bad\\x00" and run.notes == ["n\x00"]
        assert store.get_cursor("j") == "c1"


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://syncd:s3cr3t@db.example.com:notaport/syncd", "s3cr3t"],
)
def test_a_bad_state_url_is_one_line_without_the_password(url):
    with pytest.raises(ConfigError) as err:
        StateStore(url)
    assert "s3cr3t" not in str(err.value)
    assert "not a database URL" in str(err.value)
