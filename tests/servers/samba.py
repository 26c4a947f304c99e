"""A private Samba AD DC (Debian's samba 4.17) for the Active Directory tests.

Samba's LDAP server always listens on port 389 (636, 3268, 3269): there is no option
to move it. So each DC gets its own loopback address instead (127.x.y.z are all on
``lo`` on Linux; Samba accepts ``interfaces = 127.x.y.z/8`` with ``bind interfaces
only``). Several DCs can run at once and nothing else on 127.0.0.1:389 is disturbed.

Provisioning (``samba-tool domain provision``, about 5-10 s) runs once into a template
directory, which is cached between test sessions (keyed by the Samba version and this
recipe); every DC is a copy of it with its own smb.conf paths (about 0.05 s), started
with ``samba -i`` (listening after about 2-3 s).

Usage::

    template = ensure_template()
    with SambaDC(tmpdir, template) as dc:
        dc.url, dc.base, dc.admin_dn, dc.admin_pw
        ou = dc.add_ou("people")
        user = dc.add_user(ou, "alice", mail="alice@example.test")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import ldap3

from tests.servers.tls import make_ca_and_cert

SAMBA = shutil.which("samba") or "/usr/sbin/samba"
SAMBA_TOOL = shutil.which("samba-tool") or "/usr/bin/samba-tool"

REALM = "EXAMPLE.TEST"
DOMAIN = "EXAMPLE"
BASE = "DC=example,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE}"
ADMIN_PW = "Syncd-Test-Pw-1!"
AD_PORTS = (389, 636, 3268, 3269)

# Bump when the provisioning recipe below changes (invalidates cached templates).
RECIPE = "1"
PROVISION_ARGS = [
    "domain",
    "provision",
    f"--realm={REALM}",
    f"--domain={DOMAIN}",
    "--server-role=dc",
    "--dns-backend=NONE",
    "--use-rfc2307",
    f"--adminpass={ADMIN_PW}",
    "--host-name=dc1",
    "--host-ip=127.0.0.1",
    "--option=interfaces=127.0.0.1",
    "--option=bind interfaces only=yes",
]


def samba_available() -> bool:
    return Path(SAMBA).exists() and Path(SAMBA_TOOL).exists()


def _samba_version() -> str:
    out = subprocess.run([SAMBA, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cache_root() -> Path:
    default = Path(tempfile.gettempdir()) / "syncd-test-cache"
    return Path(os.environ.get("SYNCD_TEST_CACHE", default))


def ensure_template(cache: Path | None = None) -> Path:
    """A provisioned, never started DC directory; made once and reused.

    The cache key covers the Samba version and the recipe. A template is built in a
    temporary directory and renamed into place, so concurrent sessions never see a
    half-made one. Set SYNCD_SAMBA_NO_CACHE=1 to provision afresh.
    """
    cache = cache or cache_root()
    key = hashlib.sha256(f"{_samba_version()}|{RECIPE}|{PROVISION_ARGS}".encode()).hexdigest()[:12]
    template = cache / f"samba-template-{key}"
    if (template / "ok").exists() and os.environ.get("SYNCD_SAMBA_NO_CACHE") != "1":
        return template
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="samba-provision-", dir=cache))
    target = work / "dc"
    started = time.monotonic()
    proc = subprocess.run(
        [SAMBA_TOOL, *PROVISION_ARGS, f"--targetdir={target}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"samba-tool domain provision failed:\n{tail}")
    (target / "provision-seconds").write_text(f"{time.monotonic() - started:.2f}\n")
    (target / "source-dir").write_text(str(target) + "\n")
    (target / "ok").write_text("")
    if os.environ.get("SYNCD_SAMBA_NO_CACHE") == "1" and template.exists():
        shutil.rmtree(template, ignore_errors=True)
    try:
        target.rename(template)
    except OSError:
        # Another session won the race: use its template.
        pass
    shutil.rmtree(work, ignore_errors=True)
    return template


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_loopback_ip() -> str:
    """A 127.x.y.z address on which the AD ports are free."""
    rng = random.Random()
    for _ in range(200):
        ip = f"127.{rng.randint(100, 254)}.{rng.randint(0, 254)}.{rng.randint(1, 254)}"
        if all(_port_free(ip, p) for p in AD_PORTS):
            return ip
    raise RuntimeError("no free loopback address for a Samba DC")


def _ignore_sockets(directory: str, names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            mode = os.lstat(os.path.join(directory, name)).st_mode
        except OSError:
            continue
        if stat.S_ISSOCK(mode):
            out.append(name)
    return out


class SambaDC:
    """One Samba AD DC copied from a template, on its own loopback address.

    ``url`` is plain ldap:// (the DC allows simple binds without TLS: test only);
    ``ldaps_url`` and ``ca_file`` give a certificate that verifies for ``ip``.
    """

    def __init__(self, directory: str | Path, template: Path):
        self.dir = Path(directory)
        self.template = Path(template)
        self.ip = free_loopback_ip()
        self.base = BASE
        self.realm = REALM
        self.admin_dn = ADMIN_DN
        self.admin_pw = ADMIN_PW
        self.ca_file: str | None = None
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._conn: ldap3.Connection | None = None

    # --- life cycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://{self.ip}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.ip}"

    @property
    def provision_seconds(self) -> float | None:
        path = self.template / "provision-seconds"
        return float(path.read_text()) if path.exists() else None

    def setup(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        shutil.copytree(self.template, self.dir, symlinks=True, ignore=_ignore_sockets)
        old = (self.template / "source-dir").read_text().strip()
        tls = make_ca_and_cert(self.dir / "tls", hosts=[self.ip, "localhost"])
        os.chmod(tls["key"], 0o600)  # samba refuses a key others can read
        self.ca_file = tls["ca"]
        conf_path = self.dir / "etc" / "smb.conf"
        lines = []
        for line in conf_path.read_text().replace(old, str(self.dir)).splitlines():
            key = line.strip().split("=", 1)[0].strip().lower()
            if key in ("interfaces", "server services", "log file", "pid directory"):
                continue
            lines.append(line)
            if line.strip() == "[global]":
                lines += [
                    f"\tinterfaces = {self.ip}/8",
                    "\tserver services = ldap",
                    "\tldap server require strong auth = no",
                    "\tdisable netbios = yes",
                    f"\tlog file = {self.dir}/log.%m",
                    f"\tpid directory = {self.dir}/run",
                    f"\tncalrpc dir = {self.dir}/run/ncalrpc",
                    f"\twinbindd socket directory = {self.dir}/run/winbindd",
                    f"\tntp signd socket directory = {self.dir}/run/ntp_signd",
                    "\tlog level = 1",
                    f"\ttls keyfile = {tls['key']}",
                    f"\ttls certfile = {tls['cert']}",
                    f"\ttls cafile = {tls['ca']}",
                ]
        conf_path.write_text("\n".join(lines) + "\n")
        (self.dir / "cache").mkdir(exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True)
        self.conf = conf_path

    def start(self, timeout: float = 60.0) -> None:
        started = time.monotonic()
        log = open(self.dir / "samba.out", "wb")  # noqa: SIM115 - lives as long as the DC
        self.proc = subprocess.Popen(
            [SAMBA, "-i", "-s", str(self.conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can reap stragglers
        )
        log.close()
        deadline = started + timeout
        while True:
            if self.proc.poll() is not None:
                out = (self.dir / "samba.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"samba exited with {self.proc.returncode}:\n{out}")
            try:
                with socket.create_connection((self.ip, 389), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"samba did not listen on {self.ip}:389") from None
                time.sleep(0.05)
        # The port opens a moment before binds work: wait for a real bind.
        while True:
            try:
                self.connection(fresh=True)
                break
            except ldap3.core.exceptions.LDAPException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)
        self.start_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.unbind()
            self._conn = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Children of this DC only (the group was created for it in start()).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start the same DC (same database, address and identity)."""
        self.stop()
        self.start()

    def __enter__(self) -> SambaDC:
        self.setup()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if os.environ.get("SYNCD_KEEP_SAMBA") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- LDAP helpers (as Administrator) ----------------------------------------------

    def connection(self, *, fresh: bool = False) -> ldap3.Connection:
        """A bound admin connection (shared unless ``fresh``)."""
        if not fresh and self._conn is not None and self._conn.bound:
            return self._conn
        conn = ldap3.Connection(
            ldap3.Server(self.ip, port=389, get_info=ldap3.NONE, connect_timeout=5),
            self.admin_dn,
            self.admin_pw,
            auto_bind=True,
            receive_timeout=30,
        )
        if fresh:
            return conn
        self._conn = conn
        return conn

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise RuntimeError(f"{what} failed: {self.connection().result}")

    def add(self, dn: str, object_class: str | list[str], **attrs) -> str:
        conn = self.connection()
        self._check(conn.add(dn, object_class, attrs or None), f"add {dn}")
        return dn

    def add_ou(self, name: str, parent: str | None = None) -> str:
        return self.add(f"OU={name},{parent or self.base}", "organizationalUnit")

    def add_user(self, parent: str, name: str, **attrs) -> str:
        attrs.setdefault("sAMAccountName", name[:20])
        attrs.setdefault("userPrincipalName", f"{name}@{self.realm.lower()}")
        return self.add(f"CN={name},{parent}", "user", **attrs)

    def add_computer(self, parent: str, name: str, **attrs) -> str:
        attrs.setdefault("sAMAccountName", f"{name[:19]}$")
        attrs.setdefault("userAccountControl", "4096")  # WORKSTATION_TRUST_ACCOUNT
        return self.add(f"CN={name},{parent}", "computer", **attrs)

    def add_group(self, parent: str, name: str, members: list[str] = (), **attrs) -> str:
        attrs.setdefault("sAMAccountName", name[:20])
        if members:
            attrs["member"] = list(members)
        return self.add(f"CN={name},{parent}", "group", **attrs)

    def modify(self, dn: str, **replace) -> None:
        changes = {
            k: [(ldap3.MODIFY_REPLACE, v if isinstance(v, list) else [v])]
            for k, v in replace.items()
        }
        self._check(self.connection().modify(dn, changes), f"modify {dn}")

    def add_members(self, group: str, *members: str) -> None:
        ok = self.connection().modify(group, {"member": [(ldap3.MODIFY_ADD, list(members))]})
        self._check(ok, f"add members to {group}")

    def remove_members(self, group: str, *members: str) -> None:
        ok = self.connection().modify(group, {"member": [(ldap3.MODIFY_DELETE, list(members))]})
        self._check(ok, f"remove members from {group}")

    def move(self, dn: str, new_parent: str) -> str:
        rdn = dn.split(",", 1)[0]
        self._check(self.connection().modify_dn(dn, rdn, new_superior=new_parent), f"move {dn}")
        return f"{rdn},{new_parent}"

    def rename(self, dn: str, new_rdn: str) -> str:
        self._check(self.connection().modify_dn(dn, new_rdn), f"rename {dn}")
        return f"{new_rdn},{dn.split(',', 1)[1]}"

    def delete(self, dn: str) -> None:
        """Delete an entry (and, for an OU, everything below it)."""
        conn = self.connection()
        tree_delete = ("1.2.840.113556.1.4.805", True, None)
        self._check(conn.delete(dn, controls=[tree_delete]), f"delete {dn}")

    def guid(self, dn: str) -> str:
        """The objectGUID of ``dn`` as the canonical string."""
        conn = self.connection()
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        if not conn.response or "raw_attributes" not in conn.response[0]:
            raise RuntimeError(f"no entry {dn}")
        raw = conn.response[0]["raw_attributes"]["objectGUID"][0]
        return str(uuid.UUID(bytes_le=raw))

    def root_dse(self) -> dict[str, list[str]]:
        conn = self.connection()
        conn.search("", "(objectClass=*)", ldap3.BASE, attributes=[ldap3.ALL_ATTRIBUTES])
        return {k: list(v) for k, v in conn.response[0]["attributes"].items()}

    def highest_usn(self) -> int:
        return int(self.root_dse()["highestCommittedUSN"][0])
