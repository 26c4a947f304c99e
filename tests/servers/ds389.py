"""A private 389 Directory Server (Debian's ``389-ds-base``) on 127.0.0.1, run as root
without systemd, for the tests that prove every change method works on 389-ds.

``dscreate`` (about 6-7 s, more on a loaded machine) runs once per machine into a
template cached under ``/tmp/syncd-test-cache`` (keyed by the 389-ds version and this
recipe). It is a *prefix install*: ``PREFIX`` points lib389 at a private
``share/dirsrv/inf/defaults.inf`` whose paths all lie inside the template and which says
``with_systemd = 0``, so nothing touches /etc/dirsrv, /var or /run. The template has the
Retro Changelog and Content Synchronization plugins on (syncrepl), small caches, and
dc=example,dc=com with ou=people/devices/groups.

Every server is a copy of the template with the paths in ``dse.ldif`` rewritten and its
own port (about 0.1 s), started in the foreground with ``ns-slapd -d 0`` (listening after
about 1 s); SIGTERM stops it.

Usage::

    template = ensure_template()
    with Ds389(tmpdir, template) as ds:
        ds.url, ds.base, ds.root_dn, ds.root_pw
        ds.add(ldif); ds.modify(ldif); ds.delete(dn)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers.ports import free_port, wait_port

DSCREATE = shutil.which("dscreate") or "/usr/sbin/dscreate"
NS_SLAPD = shutil.which("ns-slapd") or "/usr/sbin/ns-slapd"
SYSTEM_DEFAULTS = Path("/usr/share/dirsrv/inf/defaults.inf")

INSTANCE = "syncd"
BASE = "dc=example,dc=com"
ROOT_DN = "cn=Directory Manager"
ROOT_PW = "secret-root-pw"

# Bump when the recipe below changes (invalidates cached templates).
RECIPE = "1"

BASE_LDIF = f"""dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=devices,{BASE}
objectClass: organizationalUnit
ou: devices

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups
"""

# Offline edits of dse.ldif (server stopped): syncrepl needs the Content Synchronization
# plugin, which needs the Retro Changelog (with the unique id of changed entries, so
# deletes are reported); caches are kept small since a test server holds a few entries.
PLUGIN_EDITS = {
    "cn=Retro Changelog Plugin,cn=plugins,cn=config": [
        "nsslapd-pluginEnabled: on",
        "nsslapd-attribute: nsuniqueid:targetUniqueId",
        "nsslapd-changelogmaxage: 2d",
    ],
    "cn=Content Synchronization,cn=plugins,cn=config": ["nsslapd-pluginEnabled: on"],
    "cn=config,cn=ldbm database,cn=plugins,cn=config": [
        "nsslapd-cache-autosize: 0",
        "nsslapd-dbcachesize: 16777216",
    ],
    "cn=userRoot,cn=ldbm database,cn=plugins,cn=config": [
        "nsslapd-cachememsize: 33554432",
        "nsslapd-dncachememsize: 8388608",
    ],
}


def ds389_available() -> bool:
    return Path(DSCREATE).exists() and Path(NS_SLAPD).exists() and SYSTEM_DEFAULTS.exists()


def _version() -> str:
    for line in SYSTEM_DEFAULTS.read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip()
    return "unknown"


def cache_root() -> Path:
    default = Path(tempfile.gettempdir()) / "syncd-test-cache"
    return Path(os.environ.get("SYNCD_TEST_CACHE", default))


def _defaults_inf(prefix: Path) -> str:
    """The system defaults.inf with every writable path moved under ``prefix``."""
    out = []
    for line in SYSTEM_DEFAULTS.read_text().splitlines():
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or line.startswith(";"):
            out.append(line)
            continue
        if key == "with_systemd":
            value = "0"
        elif key in ("user", "group"):
            value = "root"
        elif key == "prefix":
            value = str(prefix)
        elif value.startswith(("/etc", "/var", "/run", "/tmp", "/dev/shm")):
            value = str(prefix) + value.replace("/dev/shm", "/var/shm", 1)
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


def _create_inf(port: int) -> str:
    return f"""[general]
config_version = 2
start = False
selinux = False
systemd = False
strict_host_checking = False
full_machine_name = localhost

[slapd]
instance_name = {INSTANCE}
port = {port}
self_sign_cert = False
root_dn = {ROOT_DN}
root_password = {ROOT_PW}
user = root
group = root

[backend-userroot]
suffix = {BASE}
create_suffix_entry = True
"""


def unfold(text: str) -> list[str]:
    """LDIF lines with continuation lines (leading space) joined."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(" ") and lines:
            lines[-1] += line[1:]
        else:
            lines.append(line)
    return lines


def edit_dse(path: Path, edits: dict[str, list[str]], replace: tuple[str, str] | None = None):
    """Set attributes (``name: value`` replaces every value of ``name`` in that entry,
    except nsslapd-attribute, which is added) in an offline dse.ldif; optionally replace
    one string (a moved directory) everywhere."""
    lines = unfold(path.read_text())
    if replace:
        lines = [line.replace(*replace) for line in lines]
    out: list[str] = []
    current = None
    pending: list[str] = []

    def flush():
        out.extend(pending)
        pending.clear()

    for line in lines:
        if line.lower().startswith("dn: "):
            current = line[4:].strip().lower()
            wanted = next((v for k, v in edits.items() if k.lower() == current), [])
            pending.extend(wanted)
            out.append(line)
            continue
        if line == "":
            flush()
            current = None
        elif current is not None:
            wanted = next((v for k, v in edits.items() if k.lower() == current), [])
            names = {w.split(":", 1)[0].lower() for w in wanted} - {"nsslapd-attribute"}
            if line.split(":", 1)[0].lower() in names:
                continue
        out.append(line)
    flush()
    path.write_text("\n".join(out) + "\n")


def _instance_paths(root: Path) -> tuple[Path, Path]:
    config = root / "etc" / "dirsrv" / f"slapd-{INSTANCE}"
    return config, root / "run" / "dirsrv" / f"slapd-{INSTANCE}.pid"


def ensure_template(cache: Path | None = None) -> Path:
    """A created, stopped 389-ds instance directory; made once per machine and reused.

    Built in a temporary directory and renamed into place, so concurrent sessions never
    see a half-made one. SYNCD_DS389_NO_CACHE=1 creates it afresh.
    """
    cache = cache or cache_root()
    key = hashlib.sha256(f"{_version()}|{RECIPE}|{PLUGIN_EDITS}".encode()).hexdigest()[:12]
    template = cache / f"ds389-template-{key}"
    fresh = os.environ.get("SYNCD_DS389_NO_CACHE") == "1"
    if (template / "ok").exists() and not fresh:
        return template
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ds389-create-", dir=cache))
    root = work / "ds"
    (root / "share" / "dirsrv" / "inf").mkdir(parents=True)
    (root / "share" / "dirsrv" / "inf" / "defaults.inf").write_text(_defaults_inf(root))
    (root / "etc" / "dirsrv").mkdir(parents=True)
    for part in ("schema", "config"):
        shutil.copytree(f"/etc/dirsrv/{part}", root / "etc" / "dirsrv" / part)
    inf = root / "create.inf"
    inf.write_text(_create_inf(free_port()))
    started = time.monotonic()
    proc = subprocess.run(
        [DSCREATE, "from-file", str(inf)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFIX": str(root)},
    )
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"dscreate from-file failed:\n{tail}")
    config, _ = _instance_paths(root)
    edit_dse(config / "dse.ldif", PLUGIN_EDITS)
    # One start creates the retro changelog backend and loads the base OUs.
    server = Ds389(root, None)
    server.start()
    server.add(BASE_LDIF)
    server.stop()
    for region in (root / "var").rglob("__db.*"):
        region.unlink()  # Berkeley DB region files: recreated on start, ~100 MB
    (root / "create-seconds").write_text(f"{time.monotonic() - started:.2f}\n")
    (root / "source-dir").write_text(str(root) + "\n")
    (root / "ok").write_text("")
    if fresh and template.exists():
        shutil.rmtree(template, ignore_errors=True)
    try:
        root.rename(template)
    except OSError:
        pass  # another session won the race: use its template
    shutil.rmtree(work, ignore_errors=True)
    return template


def _copy_ignore(directory: str, names: list[str]) -> list[str]:
    # Berkeley DB region files and lock/run state are per process; logs are noise.
    return [n for n in names if n.startswith("__db.") or n.endswith((".pid", ".socket"))]


class Ds389:
    """A throwaway 389-ds. ``Ds389(dir, template)`` copies ``template`` into ``dir``;
    ``Ds389(root, None)`` runs the instance at ``root`` as it is."""

    def __init__(self, directory: str | Path, template: Path | None):
        self.dir = Path(directory)
        self.template = template
        self.port = free_port()
        self.base = BASE
        self.root_dn = ROOT_DN
        self.root_pw = ROOT_PW
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def config_dir(self) -> Path:
        return _instance_paths(self.dir)[0]

    def setup(self) -> None:
        """Copy the template and point its dse.ldif at the copy and a free port."""
        assert self.template is not None
        old = (self.template / "source-dir").read_text().strip()
        shutil.copytree(self.template, self.dir, ignore=_copy_ignore, symlinks=True)
        edit_dse(self.config_dir / "dse.ldif", {}, replace=(old, str(self.dir)))
        text = (self.config_dir / "dse.ldif").read_text()
        if old in text:
            raise RuntimeError(f"dse.ldif still names the template directory {old}")

    def _set_port(self) -> None:
        path = self.config_dir / "dse.ldif"
        text = path.read_text()
        text = re.sub(r"(?m)^nsslapd-port: \d+$", f"nsslapd-port: {self.port}", text, count=1)
        path.write_text(text)

    def start(self) -> None:
        """Start ns-slapd in the foreground and wait until it listens (a port taken in
        the meantime by a parallel test run is retried with a new one)."""
        err = ""
        for _attempt in range(3):
            self._set_port()
            _, pid_file = _instance_paths(self.dir)
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(
                [NS_SLAPD, "-D", str(self.config_dir), "-i", str(pid_file), "-d", "0"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                wait_port(self.port, timeout=30)
                return
            except TimeoutError:
                status = self.proc.poll()
                err = self.proc.stderr.read().decode() if status is not None else "no listener"
                self.stop()
                self.port = free_port()
        raise RuntimeError(f"ns-slapd did not start: {err[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def ldap(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run an OpenLDAP client tool (ldapadd, ldapmodify, ldapdelete, ldapmodrdn,
        ldapsearch) against this server as the Directory Manager."""
        tool, *rest = args
        return subprocess.run(
            [tool, "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_pw, *rest],
            input=input,
            text=True,
            capture_output=True,
            check=True,
        )

    def modify(self, ldif: str) -> None:
        self.ldap("ldapmodify", input=ldif)

    def add(self, ldif: str) -> None:
        self.ldap("ldapadd", input=ldif)

    def delete(self, *dns: str) -> None:
        self.ldap("ldapdelete", *dns)

    def __enter__(self) -> Ds389:
        self.setup()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if os.environ.get("SYNCD_KEEP_DS389") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
