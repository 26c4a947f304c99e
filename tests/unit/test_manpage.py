"""The man page is generated from the CLI, committed in docs/syncd.1, and valid roff."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from syncd import __version__
from syncd.cli import cli
from syncd.manpage import generate

PAGE = Path(__file__).resolve().parents[2] / "docs" / "syncd.1"


def test_committed_man_page_is_current():
    assert PAGE.read_text() == generate(cli, __version__), (
        "docs/syncd.1 is stale: run `.venv/bin/syncd man > docs/syncd.1`"
    )


def test_every_command_and_the_exit_codes_are_in_it():
    text = PAGE.read_text()
    for name in cli.list_commands(None):
        assert f"\\fBsyncd {name}\\fR" in text, name
    assert ".SH EXIT STATUS" in text and "RestartPreventExitStatus=2" in text


def test_groff_renders_it_without_a_warning():
    groff = shutil.which("groff")
    assert groff, "groff comes with man-db (Debian: groff-base)"
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(PAGE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    shown = re.sub(".\b", "", result.stdout)  # bold/underline are overstrikes in -Tutf8
    assert "syncd init" in shown and "EXIT STATUS" in shown


def test_groff_would_catch_broken_roff(tmp_path):
    """The check above can fail: an unknown request is warned about."""
    bad = tmp_path / "bad.1"
    bad.write_text(PAGE.read_text().replace(".SH FILES", ".XYZZY FILES"))
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert "XYZZY" in result.stderr
