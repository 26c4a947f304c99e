"""Where the files that ship with syncd are: mapping files, systemd units, the docs.

In a checkout they are the repository's ``mappings/``, ``systemd/`` and ``docs/``. An
installed wheel carries them as data files under ``<prefix>/share/syncd/`` (and the man
page under ``<prefix>/share/man/man1``), where ``<prefix>`` is the virtualenv, ``/usr``
or ``/usr/local``, or the user base of ``pip install --user``.
"""

from __future__ import annotations

import site
import sys
import sysconfig
from pathlib import Path

KINDS = ("mappings", "systemd", "docs")


def _prefixes() -> list[Path]:
    found = [sysconfig.get_path("data"), sys.prefix, site.getuserbase(), "/usr/local", "/usr"]
    out: list[Path] = []
    for p in found:
        if p and Path(p) not in out:
            out.append(Path(p))
    return out


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "mappings").is_dir() else None


def data_dir(kind: str) -> Path:
    """The directory holding ``kind`` ("mappings", "systemd" or "docs").

    Raises FileNotFoundError (naming the places looked in) when syncd was installed
    without its data files."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of data {kind!r}")
    root = _checkout()
    candidates = [root / kind] if root else []
    candidates += [p / "share" / "syncd" / kind for p in _prefixes()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"the {kind} that come with syncd are not installed (looked in "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )
