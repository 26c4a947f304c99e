"""The unit files in systemd/: `systemd-analyze verify` clean, security exposure <= 2.0.

Both commands work on unit files without systemd running as PID 1 (FACTS.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def _syncd_script() -> str:
    # verify checks that ExecStart's program exists; the packaged path /usr/bin/syncd
    # does not here, so the copies point at this environment's script.
    found = shutil.which("syncd") or str(Path(sys.executable).with_name("syncd"))
    assert Path(found).exists(), found
    return found


@pytest.fixture
def unit_dir(tmp_path):
    script = _syncd_script()
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".timer"):
            text = unit.read_text().replace("/usr/bin/syncd", script)
            (tmp_path / unit.name).write_text(text)
    return tmp_path


def _verify(unit_dir: Path, name: str) -> subprocess.CompletedProcess:
    # Documentation=man:syncd(1) is checked with man(1): the wheel installs the page
    # under the prefix's share/man; here it comes from docs/.
    man1 = unit_dir / "man" / "man1"
    man1.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNITS.parent / "docs" / "syncd.1", man1 / "syncd.1")
    return subprocess.run(
        [ANALYZE, "verify", f"./{name}"],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANPATH": str(unit_dir / "man")},
    )


@pytest.mark.parametrize(
    "name",
    [
        "syncd.service",
        "syncd-sync@inventory.service",
        "syncd-sync@inventory.timer",
        "syncd-failure@syncd.service.service",
    ],
)
def test_units_verify_without_any_warning(unit_dir, name):
    result = _verify(unit_dir, name)
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings (exit 0): none may appear.
    assert result.stderr.strip() == "", result.stderr


def test_verify_would_catch_a_bad_unit(unit_dir):
    """The check above can fail: a typo in the unit produces output."""
    bad = unit_dir / "syncd.service"
    bad.write_text(bad.read_text().replace("Type=notify", "Type=notifyy"))
    result = _verify(unit_dir, "syncd.service")
    assert "Failed to parse service type" in result.stderr


def _exposure(unit_dir: Path, name: str) -> float:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"./{name}"],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize(
    "name",
    ["syncd.service", "syncd-sync@inventory.service", "syncd-failure@syncd.service.service"],
)
def test_security_exposure_is_at_most_2(unit_dir, name):
    score = _exposure(unit_dir, name)
    assert score <= 2.0, f"{name}: exposure {score}"


def test_a_bare_unit_scores_badly(tmp_path):
    """The score parser reads real numbers (a unit without hardening is far above 2)."""
    (tmp_path / "bare.service").write_text(f"[Service]\nExecStart={_syncd_script()} daemon\n")
    assert _exposure(tmp_path, "bare.service") > 5.0


def _settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_daemon_unit_has_what_the_daemon_relies_on():
    s = _settings(UNITS / "syncd.service")
    assert s["Type"] == ["notify"]
    assert "syncd -c /etc/syncd/syncd.yaml daemon" in s["ExecStart"][0]
    # A reload validates first, so a refused config fails `systemctl reload` visibly.
    assert s["ExecReload"][0].endswith("syncd -c /etc/syncd/syncd.yaml validate")
    assert s["ExecReload"][1:] == ["/bin/kill -HUP $MAINPID"]
    # A bad config (exit 2) is not restarted in a loop; failures are reported.
    from syncd.errors import ConfigError, SecretError

    assert s["RestartPreventExitStatus"] == [str(ConfigError.exit_code)]
    assert ConfigError.exit_code == SecretError.exit_code == 2
    assert s["OnFailure"] == ["syncd-failure@%n.service"]
    assert s["WatchdogSec"] and s["DynamicUser"] == ["yes"]
    assert s["StateDirectory"] == ["syncd"] and s["ConfigurationDirectory"] == ["syncd"]
    assert s["ProtectSystem"] == ["strict"]
    # The network it exists for: LDAP/SQL/HTTP over IPv4/IPv6 and local sockets.
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "PrivateNetwork" not in s and "IPAddressDeny" not in s
    # LoadCredential examples are there, commented out, in the credstore form a root
    # shell finds too (syncd.secrets.CREDSTORE_DIRS).
    assert "#LoadCredential=ldap-bind\n" in (UNITS / "syncd.service").read_text()


def test_oneshot_unit_runs_one_job_and_treats_busy_as_success():
    s = _settings(UNITS / "syncd-sync@.service")
    assert s["Type"] == ["oneshot"]
    assert s["ExecStart"][0].endswith("sync --no-progress %i")
    assert s["SuccessExitStatus"] == ["7"]  # syncd.errors.Busy.exit_code
    from syncd.errors import Busy

    assert Busy.exit_code == 7
    assert s["OnFailure"] == ["syncd-failure@%n.service"]
    t = _settings(UNITS / "syncd-sync@.timer")
    assert t["OnCalendar"] and t["Persistent"] == ["true"]
