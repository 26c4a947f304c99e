"""A private Radicale (CardDAV/CalDAV server from PyPI) on 127.0.0.1 and a random port.

Radicale runs in a subprocess (``python -c <launcher> CONFIG``), as it would in
production; the launcher only adds what a config file cannot say: the private
``_filesystem_fsync`` option (off by default here: tests do not need durable writes, and
fsync per PUT is what makes Radicale slow on small disks).

Usage::

    with Radicale(tmpdir) as r:
        r.url                      # http://127.0.0.1:PORT/
        r.user, r.password         # a user in the htpasswd file (plain)
        r.add_user("bob", "pw")    # read by Radicale on the next request
        r.client()                 # an httpx.Client authenticated as r.user
        r.stop(); r.start()        # the same storage survives a restart

``tls=True`` serves https:// with a private CA (``ca_file``) whose certificate names
127.0.0.1 and localhost.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers.ports import free_port, wait_port

USER = "alice"
PASSWORD = "alice-Pa55-radicale"

# Loads the config file named on the command line, switches fsync off (a private option
# only settable in code) and serves until SIGTERM.
_LAUNCHER = """
import signal, sys
from radicale import config, log, server
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
log.setup()
configuration = config.load([(sys.argv[1], False)])
configuration.update({"storage": {"_filesystem_fsync": sys.argv[2]}}, "tests", privileged=True)
log.set_level(configuration.get("logging", "level"), False)
server.serve(configuration)
"""


class Radicale:
    """A throwaway Radicale with htpasswd (plain) authentication and owner_only rights."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        tls: bool = False,
        fsync: bool = False,
        auth: bool = True,
    ):
        self.dir = Path(directory or tempfile.mkdtemp(prefix="radicale-"))
        self.port = free_port()
        self.tls = tls
        self.fsync = fsync
        self.auth = auth
        self.user = USER
        self.password = PASSWORD
        self.ca_file: str | None = None
        self.proc: subprocess.Popen | None = None
        self._log: Path = self.dir / "radicale.log"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    @property
    def storage(self) -> Path:
        return self.dir / "collections"

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        self.users_file = self.dir / "users"
        if not self.users_file.exists():
            self.users_file.write_text(f"{self.user}:{self.password}\n")
        ssl_lines = "ssl = False\n"
        if self.tls:
            from tests.servers.tls import make_ca_and_cert

            files = make_ca_and_cert(self.dir / "tls", hosts=["127.0.0.1", "localhost"])
            self.ca_file = files["ca"]
            ssl_lines = f"ssl = True\ncertificate = {files['cert']}\nkey = {files['key']}\n"
        auth = (
            "type = htpasswd\n"
            f"htpasswd_filename = {self.users_file}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "htpasswd_cache = True\n"
            if self.auth
            else "type = none\n"
        )
        self.conf = self.dir / "radicale.conf"
        self.conf.write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "max_connections = 20\n"
            f"{ssl_lines}"
            "[auth]\n"
            f"{auth}"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.storage}\n"
            "[logging]\n"
            "level = warning\n"
            "mask_passwords = True\n"
        )

    def add_user(self, user: str, password: str) -> None:
        """Add a user to the htpasswd file (Radicale reads it on every request)."""
        with self.users_file.open("a") as f:
            f.write(f"{user}:{password}\n")

    def start(self) -> None:
        log = self._log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(self.conf), str(self.fsync)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()
        try:
            wait_port(self.port, timeout=20)
            self.wait_ready()
        except (TimeoutError, httpx.TransportError):
            self.stop()
            raise RuntimeError(f"radicale did not start: {self.log_tail()}") from None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until Radicale answers HTTP (the port may open before the app is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with httpx.Client(verify=self._verify(), timeout=2) as c:
                    c.request("OPTIONS", self.url)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self._log.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def client(self, user: str | None = None, password: str | None = None) -> httpx.Client:
        """A plain httpx client for tests (independent of the code under test)."""
        return httpx.Client(
            base_url=self.url,
            auth=(user or self.user, password or self.password),
            verify=self._verify(),
            timeout=30,
        )

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True

    def __enter__(self) -> Radicale:
        self.setup()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if os.environ.get("SYNCD_KEEP_RADICALE") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
