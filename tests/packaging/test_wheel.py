"""The wheel carries what an installation needs besides the code: mapping files,
systemd units, docs, the man page and the licence; and `syncd init` works from an
installed wheel, in a fresh virtualenv, far from any checkout (issue 11 item 8).

The wheel is built once per session with `pip wheel` (setuptools from PyPI in pip's
build environment). The fresh virtualenv gets syncd's dependencies from this test
environment through a .pth file, so nothing else is downloaded, and syncd itself only
from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (found,) = out.glob("syncd-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its directory."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=False)
    env_py = env / "bin" / "python"
    site_dir = subprocess.run(
        [str(env_py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies (not syncd: the editable install is a .pth in that directory,
    # and .pth files of a directory named in a .pth are not read).
    Path(site_dir, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return env


def test_wheel_lists_data_files_licence_and_metadata(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    data = "syncd-0.1.0.data/data/share/"
    for mapping in (ROOT / "mappings").glob("*.yaml"):
        assert f"{data}syncd/mappings/{mapping.name}" in names
    for unit in (
        "syncd.service",
        "syncd-sync@.service",
        "syncd-sync@.timer",
        "syncd-failure@.service",
        "README.md",
    ):
        assert f"{data}syncd/systemd/{unit}" in names
    assert f"{data}syncd/docs/README.md" in names and f"{data}syncd/docs/reference.md" in names
    assert f"{data}man/man1/syncd.1" in names
    assert "syncd-0.1.0.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("connectors/", "tests/"))]
    meta = zipfile.ZipFile(wheel).read("syncd-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "License-File: LICENSE" in meta
    assert "Classifier: Intended Audience :: System Administrators" in meta
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_syncd_init_from_the_installed_wheel(installed, tmp_path):
    syncd = installed / "bin" / "syncd"
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCD_CONFIG", "PYTHONPATH")}
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import syncd; print(syncd.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed)), where  # not the checkout
    result = subprocess.run(
        [str(syncd), "init", "--job", "addressbook"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "syncd.yaml").is_file()
    copied = tmp_path / "mappings" / "contacts-openldap-vcard.yaml"
    assert copied.read_text() == (ROOT / "mappings" / copied.name).read_text()
    # The config loads (only the secrets it refers to are missing here).
    check = subprocess.run(
        [str(syncd), "validate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 2, check.stderr
    assert all("secret systemd credential" in line for line in check.stderr.splitlines())


def test_man_finds_the_installed_page(installed):
    page = installed / "share" / "man" / "man1" / "syncd.1"
    assert page.is_file()
    man = shutil.which("man")
    assert man
    result = subprocess.run(
        [man, "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
    )
    assert result.returncode == 0, result.stderr
    shown = re.sub(".\b", "", result.stdout)
    assert "syncd - directory synchronization daemon" in shown
    assert "syncd init" in shown
