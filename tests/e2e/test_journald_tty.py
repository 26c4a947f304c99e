"""Logs under the journal (sd-daemon priority prefixes, the job in every change line)
and on a terminal (one rich console for log and progress bar; a first sync prints a
summary), through the real console script."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

from tests.e2e.conftest import device

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    env.update(extra)
    return env


def _sync_to_file(setup, log_path, journal_of=None, *args: str) -> int:
    """Run ``syncd sync inventory`` with stderr into ``log_path``; $JOURNAL_STREAM names
    the device:inode of ``journal_of`` (the log file itself: stderr is 'the journal')."""
    with open(log_path, "w") as log:
        target = journal_of or log_path
        st = os.stat(target)
        env = _env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        cmd = [sys.executable, "-m", "syncd", "-c", str(setup.config), "sync", "inventory"]
        return subprocess.run(
            [*cmd, *args], stdout=subprocess.DEVNULL, stderr=log, env=env, timeout=120
        ).returncode


def test_journal_lines_carry_priorities_and_change_lines_the_job(inventory, tmp_path):
    inventory.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-bad", serial=None)]))
    log_path = tmp_path / "journal.log"
    assert _sync_to_file(inventory, log_path) == 0
    lines = log_path.read_text().splitlines()
    assert lines and all(re.match(r"^<[0-7]>\{", line) for line in lines), lines
    records = [(int(line[1]), json.loads(line[3:])) for line in lines]
    warnings = [(p, r) for p, r in records if "quarantined" in r["msg"]]
    assert warnings and all(p == 4 and r["level"] == "WARNING" for p, r in warnings)
    assert all(r["job"] == "inventory" and r["msg"].startswith("inventory: ") for _, r in warnings)
    changes = [(p, r) for p, r in records if r["logger"] == "syncd.changes"]
    assert len(changes) == 1
    prio, change = changes[0]
    assert prio == 6 and change["job"] == "inventory"
    assert change["msg"].startswith("inventory: create cn=pc-1,ou=devices")

    # A $JOURNAL_STREAM of another file (inherited, stderr redirected): no prefixes.
    other = tmp_path / "other"
    other.write_text("")
    inventory.slapd.add(device("pc-2", "SN-2"))
    plain_log = tmp_path / "plain.log"
    assert _sync_to_file(inventory, plain_log, journal_of=other) == 0
    text = plain_log.read_text().splitlines()
    assert text and not any(line.startswith("<") for line in text), text


def _run_on_pty(setup, *args: str, timeout: float = 60.0) -> tuple[int, str]:
    """``syncd ... sync inventory`` with stdin/stdout/stderr on a pseudo terminal;
    returns the exit code and everything the terminal received."""
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "syncd", "-c", str(setup.config), *args]
    proc = subprocess.Popen(
        cmd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(TERM="xterm-256color", COLUMNS="120", LINES="40"),
        close_fds=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, out.decode("utf-8", "replace")


def _screen_lines(raw: str) -> list[str]:
    """What each terminal line shows at the end: text after the last carriage return
    (a redraw starts with one), without colour and cursor sequences."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        lines.append(_ANSI.sub("", line.split("\r")[-1]))
    return lines


def test_tty_log_lines_do_not_go_through_the_progress_bar_and_first_run_is_a_summary(
    inventory,
):
    devices = [device(f"pc-{i}", f"SN-{i}") for i in range(3)]
    inventory.slapd.add("\n".join([*devices, device("pc-bad", serial=None)]))
    code, raw = _run_on_pty(inventory, "sync", "inventory")
    assert code == 0, raw
    screen = _screen_lines(raw)
    warning = [line for line in screen if "quarantined cn=pc-bad" in line]
    assert len(warning) == 1, raw
    # The warning has a line of its own: no progress bar text in front of it.
    assert "reading" not in warning[0] and "entries" not in warning[0].split("quarantined")[0]
    assert "WARNING" in warning[0]
    # A first run: the summary and a note, not one line per created device.
    assert any("3 created" in line for line in screen), raw
    assert any("first run: its 3 changes are not listed" in line for line in screen), raw
    assert not any("create cn=pc-" in line for line in screen), raw

    # Not a first run any more, -v: each change gets its line, with the job's name.
    inventory.slapd.add(device("pc-new", "SN-new"))
    code, raw = _run_on_pty(inventory, "-v", "sync", "inventory")
    assert code == 0, raw
    screen = _screen_lines(raw)
    assert any("inventory: create cn=pc-new,ou=devices" in line for line in screen), raw
