"""Target drift: rows edited or deleted in the SQL target by hand are found by a complete
run (`--full`), reported by `plan --check --full`, and repaired by `sync --full`."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import Setup, device, write_config


def _setup(tmp_path, slapd, db_url: str) -> Setup:
    """The inventory job into ``db_url``; a password in it goes to a secret file."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    url = sa.make_url(db_url)
    bare = url._replace(password=None).render_as_string(hide_password=False)
    cfg = write_config(work, slapd, bare, db_password=url.password)
    return Setup(work, cfg, slapd, db_url)


def _rows(db_url: str) -> dict[str, dict]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text("SELECT * FROM devices"))
            return {r["hostname"]: dict(r) for r in result.mappings()}
    finally:
        engine.dispose()


def _sql(db_url: str, statement: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _drift_round_trip(setup: Setup) -> None:
    setup.slapd.add(
        "\n".join(
            [
                device("pc-1", "SN-1", "Paris"),
                device("pc-2", "SN-2", "東京"),
                device("pc-3", "SN-3", "Zürich", description="spare"),
            ]
        )
    )
    assert "3 created" in setup.syncd("sync", "inventory", "--no-progress").stdout
    # Without drift a complete check is clean (the read-back equals what was written).
    assert setup.syncd("plan", "inventory", "--full", "--check", check=False).returncode == 0

    _sql(setup.db_url, "UPDATE devices SET location = 'Mars' WHERE hostname = 'pc-1'")
    _sql(setup.db_url, "DELETE FROM devices WHERE hostname = 'pc-2'")
    # An incremental-style run (no --full) trusts the state, as before: nothing to do.
    assert "nothing to change" in setup.syncd("sync", "inventory", "--no-progress").stdout

    check = setup.syncd("plan", "inventory", "--full", "--check", check=False)
    assert check.returncode == 1
    assert "target drift: 1 edited, 1 missing" in check.stdout + check.stderr
    assert _rows(setup.db_url)["pc-1"]["location"] == "Mars", "plan must not write"

    out = setup.syncd("sync", "inventory", "--full", "--no-progress").stdout
    assert "2 updated" in out
    got = _rows(setup.db_url)
    assert got["pc-1"]["location"] == "Paris"
    assert got["pc-2"]["location"] == "東京" and got["pc-2"]["serial"] == "SN-2"
    assert got["pc-3"]["description"] == "spare"
    assert setup.syncd("plan", "inventory", "--full", "--check", check=False).returncode == 0


@pytest.mark.slapd
def test_sqlite_rows_edited_or_deleted_by_hand_are_repaired(tmp_path, slapd):
    work = tmp_path / "work"
    _drift_round_trip(_setup(tmp_path, slapd, f"sqlite:///{work}/inventory.db"))


@pytest.mark.slapd
@pytest.mark.postgres
def test_postgresql_rows_edited_or_deleted_by_hand_are_repaired(tmp_path, slapd, postgres_url):
    _drift_round_trip(_setup(tmp_path, slapd, postgres_url))


@pytest.mark.slapd
def test_soft_deleted_row_is_brought_back(tmp_path, slapd):
    work = tmp_path / "work"
    work.mkdir()
    db_url = f"sqlite:///{work}/inventory.db"
    cfg = write_config(work, slapd, db_url, target={"on_delete": "soft"})
    setup = Setup(work, cfg, slapd, db_url)
    setup.slapd.add(device("pc-1", "SN-1"))
    setup.syncd("sync", "inventory", "--no-progress")
    _sql(db_url, "UPDATE devices SET deleted_at = '2026-01-01 00:00:00' WHERE hostname = 'pc-1'")
    assert setup.syncd("plan", "inventory", "--full", "--check", check=False).returncode == 1
    setup.syncd("sync", "inventory", "--full", "--no-progress")
    assert _rows(db_url)["pc-1"]["deleted_at"] is None
