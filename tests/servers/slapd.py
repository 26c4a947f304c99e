"""A private OpenLDAP slapd (Debian's), on 127.0.0.1 and a random port.

mdb database dc=example,dc=com with syncprov (session log from accesslog) and accesslog,
so syncrepl tests see exact deletes. Optionally TLS with a private CA (see tls=True).

Usage::

    with Slapd(tmpdir) as s:
        s.url, s.base, s.root_dn, s.root_pw
        s.add_ldif(text)   # through slapadd before start, or ldapadd when running
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.servers.ports import free_port, wait_port

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SCHEMA = "/etc/ldap/schema"
MODULES = "/usr/lib/ldap"

BASE = "dc=example,dc=com"
ROOT_DN = "cn=admin,dc=example,dc=com"
ROOT_PW = "secret-root-pw"

BASE_LDIF = f"""dn: {BASE}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=devices,{BASE}
objectClass: organizationalUnit
ou: devices

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups
"""


def slapd_conf(
    directory: Path,
    *,
    tls: dict[str, str] | None = None,
    extra_main: str = "",
    limits: str = "",
) -> str:
    """slapd.conf text; ``limits`` lines go before the default ``limits users`` one (the
    first matching clause wins)."""
    tls_lines = ""
    if tls:
        tls_lines = (
            f"TLSCACertificateFile {tls['ca']}\n"
            f"TLSCertificateFile {tls['cert']}\n"
            f"TLSCertificateKeyFile {tls['key']}\n"
        )
    return f"""
include {SCHEMA}/core.schema
include {SCHEMA}/cosine.schema
include {SCHEMA}/nis.schema
include {SCHEMA}/inetorgperson.schema
modulepath {MODULES}
moduleload back_mdb
moduleload syncprov
moduleload accesslog
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
sizelimit 500
{tls_lines}
database mdb
suffix "cn=accesslog"
rootdn "cn=admin,cn=accesslog"
directory {directory}/accesslog
maxsize 1073741824
index default eq
index entryCSN,objectClass,reqEnd,reqResult,reqStart,reqDN eq
overlay syncprov
syncprov-nopresent TRUE
syncprov-reloadhint TRUE

database mdb
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {directory}/data
maxsize 4294967296
index objectClass,entryCSN,entryUUID,uid,cn,member,modifyTimestamp eq
{limits}
limits users size.pr=unlimited size.prtotal=unlimited
{extra_main}
overlay syncprov
syncprov-checkpoint 100 10
syncprov-sessionlog-source cn=accesslog
overlay accesslog
logdb cn=accesslog
logops writes
logsuccess TRUE
logpurge 07+00:00 01+00:00
"""


class Slapd:
    """A throwaway slapd. ``tls=True`` also listens on ldaps:// with a private CA
    (``ca_file``) whose server certificate names 127.0.0.1 and localhost."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        tls: bool = False,
        ldif: str = "",
        extra_main: str = "",
        limits: str = "",
    ):
        self.dir = Path(directory or tempfile.mkdtemp(prefix="slapd-"))
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.base = BASE
        self.root_dn = ROOT_DN
        self.root_pw = ROOT_PW
        self.tls = tls
        self.ca_file: str | None = None
        self._ldif = ldif
        self._extra_main = extra_main
        self._limits = limits
        self.proc: subprocess.Popen | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def _make_tls(self) -> dict[str, str]:
        from tests.servers.tls import make_ca_and_cert

        files = make_ca_and_cert(self.dir / "tls", hosts=["127.0.0.1", "localhost"])
        self.ca_file = files["ca"]
        return files

    def setup(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "accesslog").mkdir(parents=True, exist_ok=True)
        tls = self._make_tls() if self.tls else None
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(
            slapd_conf(self.dir, tls=tls, extra_main=self._extra_main, limits=self._limits)
        )
        self.slapadd(BASE_LDIF + ("\n" + self._ldif if self._ldif else ""))

    def slapadd(self, ldif: str) -> None:
        """Bulk-load LDIF while slapd is stopped (fast; no accesslog entries)."""
        path = self.dir / "load.ldif"
        path.write_text(ldif, encoding="utf-8")
        self.slapadd_file(path)

    def slapadd_file(self, path: Path) -> None:
        """Bulk-load an LDIF file while slapd is stopped (a million entries need not be
        held in memory as text)."""
        subprocess.run(
            [SLAPADD, "-q", "-w", "-f", str(self.conf), "-b", BASE, "-l", str(path)],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        """Start slapd and wait until it listens. On the first start a port taken by
        another process in the meantime (tests run in parallel) is retried with new
        ports; a restart keeps its ports, since clients hold its URL."""
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            err = self._start_once()
            if err is None:
                self._started_once = True
                return
            if attempt + 1 < attempts:
                self.port = free_port()
                if self.tls:
                    self.ldaps_port = free_port()
        raise RuntimeError(f"slapd did not start: {err}")

    def _start_once(self) -> str | None:
        urls = self.url + "/"
        if self.tls:
            urls += f" {self.ldaps_url}/"
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(self.conf), "-h", urls],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port, timeout=15)
            if self.ldaps_port:
                wait_port(self.ldaps_port, timeout=15)
        except TimeoutError:
            status = self.proc.poll()
            err = self.proc.stderr.read().decode() if status is not None else ""
            self.stop()
            if status is None:
                return "not listening after 15 s"
            return err or f"exited with status {status}"
        return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def ldap(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run an OpenLDAP client tool (ldapadd, ldapmodify, ldapdelete, ldapmodrdn,
        ldapsearch) against this server as the root DN."""
        tool, *rest = args
        return subprocess.run(
            [tool, "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_pw, *rest],
            input=input,
            text=True,
            capture_output=True,
            check=True,
        )

    def modify(self, ldif: str) -> None:
        """Apply an LDIF with changetype records (ldapmodify)."""
        self.ldap("ldapmodify", input=ldif)

    def add(self, ldif: str) -> None:
        self.ldap("ldapadd", input=ldif)

    def delete(self, *dns: str) -> None:
        self.ldap("ldapdelete", *dns)

    def __enter__(self) -> Slapd:
        self.setup()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if os.environ.get("SYNCD_KEEP_SLAPD") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
