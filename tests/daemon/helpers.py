"""Helpers for the daemon tests: a real sd_notify socket, configs, the CLI runner."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_CLI = Path(__file__).with_name("run_cli.py")


def syncd_cmd(config: Path | str, *args: str) -> list[str]:
    """argv running ``syncd -c CONFIG ARGS...`` in a fresh Python."""
    return [sys.executable, str(RUN_CLI), "-c", str(config), *args]


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, abstract: bool = False):
        self._dir = tempfile.mkdtemp(prefix="syncd-notify-")  # short path: 108-byte limit
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"syncd-test-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = f"{self._dir}/notify"
            self.sock.bind(self.address)
        self.received: list[dict[str, str]] = []
        self._pos = 0

    def poll(self, timeout: float) -> list[dict[str, str]]:
        """Read every datagram arriving within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        new = []
        try:
            while True:
                data = self.sock.recv(65536)
                fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
                new.append(fields)
                self.sock.settimeout(0.01)
        except (TimeoutError, BlockingIOError):
            pass
        self.received.extend(new)
        return new

    def wait_for(
        self, key: str, value: str | None = None, timeout: float = 15.0, contains: str | None = None
    ) -> dict[str, str]:
        """The next message (after the last one matched) with ``key`` (= ``value`` /
        containing ``contains``); messages before it are passed over."""
        deadline = time.monotonic() + timeout
        while True:
            while self._pos < len(self.received):
                msg = self.received[self._pos]
                self._pos += 1
                if (
                    key in msg
                    and (value is None or msg[key] == value)
                    and (contains is None or contains in msg[key])
                ):
                    return msg
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {key}={value or contains or '*'} within {timeout}s; "
                    f"got {self.received[-10:]}"
                )
            self.poll(0.2)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM and wait; kill if it does not stop. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the daemon did not stop within 10 s of SIGTERM") from None
    return proc.returncode
