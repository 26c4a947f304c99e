"""A TCP proxy on loopback that passes a server's answers on slowly: the first
``fast_bytes`` at once, then ``chunk`` bytes every ``interval`` seconds. It models a
server (or a middlebox) that keeps a connection alive by trickling bytes, so every
single receive finishes well within a socket timeout while the whole answer never
arrives in useful time. Each connection is cut after ``max_seconds`` so a test that
does not stop reading by itself is still bounded.

Usage::

    with TrickleProxy(("127.0.0.1", slapd.port), fast_bytes=0, chunk=64) as proxy:
        url = proxy.url
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TrickleProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        fast_bytes: int = 0,
        chunk: int = 64,
        interval: float = 0.05,
        max_seconds: float = 15.0,
    ):
        self.upstream = upstream
        self.fast_bytes = fast_bytes
        self.chunk = chunk
        self.interval = interval
        self.max_seconds = max_seconds
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def __enter__(self) -> TrickleProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for s in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            self._sockets += [client, server]
            for target in (self._up, self._down):
                t = threading.Thread(target=target, args=(client, server), daemon=True)
                t.start()
                self._threads.append(t)

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _down(self, client: socket.socket, server: socket.socket) -> None:
        start = time.monotonic()
        sent = 0
        pending = b""
        server.settimeout(0.1)
        try:
            while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
                if not pending:
                    try:
                        pending = server.recv(65536)
                    except TimeoutError:
                        continue
                    if not pending:
                        break
                if sent < self.fast_bytes:
                    n = min(len(pending), self.fast_bytes - sent)
                else:
                    n = min(len(pending), self.chunk)
                    time.sleep(self.interval)
                client.sendall(pending[:n])
                pending = pending[n:]
                sent += n
        except OSError:
            pass
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.close()
