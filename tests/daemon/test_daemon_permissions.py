"""The daemon warns at start when its config file is readable by others (issue 9.8)."""

from __future__ import annotations

import logging
import threading

from syncd.daemon import Daemon
from syncd.notify import Notifier
from tests.servers.ports import free_port, wait_port


def test_daemon_start_warns_about_a_world_readable_config(tmp_path, caplog):
    port = free_port()
    config = tmp_path / "syncd.yaml"
    config.write_text(
        "version: 1\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        f"daemon: {{listen: '127.0.0.1:{port}', node: perm}}\n"
    )
    config.chmod(0o644)
    daemon = Daemon(
        config, notifier=Notifier(environ={}), install_signals=False, configure_logging=False
    )
    result: list[int] = []
    with caplog.at_level(logging.WARNING, logger="syncd"):
        thread = threading.Thread(target=lambda: result.append(daemon.run()))
        thread.start()
        try:
            wait_port(port)
        finally:
            daemon.request_stop()
            thread.join(30)
    assert result == [0]
    warned = [r.getMessage() for r in caplog.records if str(config) in r.getMessage()]
    assert warned and "chmod 600" in warned[0]
