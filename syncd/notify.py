"""systemd's sd_notify protocol, written directly (no libsystemd binding needed).

The protocol is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a leading ``@`` means a Linux abstract socket). Outside systemd the
variable is unset and every call is a cheap no-op, so the daemon calls these freely.

What syncd sends: ``READY=1`` once config and state store are checked, ``RELOADING=1``
around a SIGHUP reload, ``WATCHDOG=1`` from the scheduler at half of ``$WATCHDOG_USEC``,
``STATUS=`` with the last run of each job, ``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (or to ``address`` when given).

    Sending never raises: a notification that cannot be delivered is logged once at
    debug level and the daemon goes on (systemd's watchdog will say if it matters).
    """

    def __init__(self, address: str | None = None, *, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to (running under systemd Type=notify)."""
        return bool(self.address)

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), None if no watchdog."""
        if not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="...")``). True if sent."""
        if not self.address:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one line per field, by protocol
            lines.append(f"{key}={text}")
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                # Never block: a notify socket nobody reads (a full buffer) must not stall
                # the scheduler or a run; a lost STATUS line is harmless.
                self._sock.sendto(payload, socket.MSG_DONTWAIT, target)
                return True
            except OSError as err:
                if not self._warned:
                    log.debug("sd_notify to %s failed: %s", self.address, err)
                    self._warned = True
                return False

    def ready(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"READY": 1}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets newer systemd (253+) match the reload to its READY=1.
        return self.notify(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1_000_000))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """WATCHDOG=1, only when systemd asked for pings ($WATCHDOG_USEC)."""
        if not self._watchdog_usec:
            return False
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"STOPPING": 1}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _watchdog_usec(env: dict[str, str] | os._Environ[str]) -> int | None:
    """$WATCHDOG_USEC if it is meant for this process ($WATCHDOG_PID unset or ours)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    return usec if usec > 0 else None
