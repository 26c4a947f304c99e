"""The daemon applies state.retention after its first run, then at most once a day."""

from __future__ import annotations

import datetime as _dt

from sqlalchemy import update

from syncd.config import load_config
from syncd.daemon import RETENTION_EVERY, Daemon
from syncd.state import schema


def _old_runs(store, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        run_id = store.start_run("x", method="full", node="n")
        store.finish_run(run_id, status="failed", counts={})
        ids.append(run_id)
    old = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=3)
    with store.engine.begin() as conn:
        conn.execute(update(schema.runs).values(started=old, finished=old))
    return ids


def test_retention_runs_once_a_day(tmp_path):
    config = tmp_path / "syncd.yaml"
    config.write_text(
        "version: 1\n"
        f'state: {{url: "sqlite:///{tmp_path / "state.db"}", retention: {{runs: 1d}}}}\n'
    )
    daemon = Daemon(config, install_signals=False, configure_logging=False)
    daemon.cfg = load_config(config)
    daemon.store = daemon.cfg.open_state()
    try:
        ids = _old_runs(daemon.store, 3)
        daemon._prune_daily()
        assert [r.id for r in daemon.store.runs("x")] == [ids[-1]], "only the latest is kept"
        more = _old_runs(daemon.store, 2)
        daemon._prune_daily()  # less than a day since the last time: nothing happens
        assert len(daemon.store.runs("x")) == 3
        daemon._last_prune -= RETENTION_EVERY + 1
        daemon._prune_daily()
        assert [r.id for r in daemon.store.runs("x")] == [more[-1]]
    finally:
        daemon.store.close()
