"""The Daemon object in this process (no signals): liveness goes 503 when the scheduler's
heartbeat goes stale, readiness when the state store stops answering; request_stop()
ends run() with 0."""

from __future__ import annotations

import threading

import httpx

from syncd.daemon import Daemon
from syncd.notify import Notifier
from tests.servers.ports import free_port, wait_port


def test_liveness_and_readiness_follow_the_scheduler_and_the_store(tmp_path):
    port = free_port()
    db = tmp_path / "state.db"
    config = tmp_path / "syncd.yaml"
    config.write_text(
        "version: 1\n"
        f"state: {{url: 'sqlite:///{db}'}}\n"
        f"daemon: {{listen: '127.0.0.1:{port}', node: inproc}}\n"
    )
    daemon = Daemon(
        config, notifier=Notifier(environ={}), install_signals=False, configure_logging=False
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()))
    thread.start()
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200

        daemon._last_beat -= 3600  # as if the scheduler had hung an hour ago
        stale = httpx.get(f"{base}/healthz")
        assert stale.status_code == 503 and "heartbeat is" in stale.text

        daemon.store.engine.dispose()
        db.unlink()
        db.mkdir()  # the state file is gone and cannot be recreated
        daemon._store_ok = (0.0, True, "")  # skip the readiness cache
        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503 and "not reachable" in not_ready.text
    finally:
        daemon.request_stop()
        thread.join(30)
    assert result == [0]
    assert not daemon.scheduler.thread_alive()
