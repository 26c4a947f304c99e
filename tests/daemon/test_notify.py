"""sd_notify against a real datagram socket (path and abstract)."""

from __future__ import annotations

import os

import pytest

from syncd.notify import Notifier
from tests.daemon.helpers import NotifySocket


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_arrive_as_key_value_datagrams(abstract):
    sock = NotifySocket(abstract=abstract)
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "2000000"})
        assert n.enabled
        assert n.ready(status="scheduling 2 jobs")
        assert n.status("inventory: ok 12s, 3 created\nsecond line")
        assert n.watchdog()
        assert n.stopping()
        got = sock.poll(1.0)
        assert got == [
            {"READY": "1", "STATUS": "scheduling 2 jobs"},
            {"STATUS": "inventory: ok 12s, 3 created second line"},
            {"WATCHDOG": "1"},
            {"STOPPING": "1"},
        ]
        assert n.reloading()
        msg = sock.poll(1.0)[0]
        assert msg["RELOADING"] == "1" and int(msg["MONOTONIC_USEC"]) > 0
        n.close()
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier(environ={})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval() is None


def test_watchdog_pings_only_when_systemd_asked_for_them():
    sock = NotifySocket()
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": sock.address}).watchdog() is False
        assert sock.poll(0.2) == []
    finally:
        sock.close()


def test_a_socket_nobody_reads_never_blocks_the_sender():
    """systemd reads its socket; a stalled reader must not stall the daemon's threads."""
    import time

    sock = NotifySocket()
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": sock.address})
        started = time.monotonic()
        sent = [n.status("x" * 1000) for _ in range(5000)]
        assert time.monotonic() - started < 10
        assert sent[0] is True and sent[-1] is False  # the buffer filled up; later ones dropped
    finally:
        sock.close()


def test_unreachable_socket_does_not_raise(tmp_path):
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid():
    env = {"WATCHDOG_USEC": "20000000"}
    assert Notifier(environ=env).watchdog_interval() == 10.0
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(environ=env).watchdog_interval() == 10.0
    env["WATCHDOG_PID"] = "1"  # meant for another process
    assert Notifier(environ=env).watchdog_interval() is None
    assert Notifier(environ={"WATCHDOG_USEC": "bogus"}).watchdog_interval() is None
