"""Warnings for a config file or a ``{file: PATH}`` secret that others can read.

The config holds no secret values, but it says where they are and what syncd may do;
a ``{file:}`` secret is the password itself. Either one readable (or writable) by other
users is worth a warning at every ``validate``, ``sync`` and daemon start. Group access
is fine for the service's own group (``640 root:syncd``: a root-owned file the service
reads through its group), not for any other group.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from syncd.secrets import SecretRef

SERVICE_GROUP = "syncd"
"""The group that may read syncd's files (a static ``syncd`` group, see systemd/README.md)."""


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def loose_access(path: Path) -> str | None:
    """Who besides the owner may read or write ``path`` ("others", "group adm"...), or
    None when nobody may (or the file cannot be examined: other checks report that)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        return "other users"
    group = _group_name(st.st_gid) or str(st.st_gid)
    if mode & 0o020 or (mode & 0o070 and group != SERVICE_GROUP):
        return f"group {group}"
    return None


def _secret_files(value: Any) -> Iterator[Path]:
    """Every ``{file: PATH}`` secret inside a config model (nested blocks too), and the
    credential store file of each ``{credential: NAME}`` read from a shell."""
    if isinstance(value, SecretRef):
        if value.file:
            yield Path(value.file)
        elif value.credential and not os.environ.get("CREDENTIALS_DIRECTORY"):
            # From a shell, credentials are read from systemd's credential stores.
            from syncd import secrets

            for store in secrets.CREDSTORE_DIRS:
                if (store / value.credential).exists():
                    yield store / value.credential
                    break
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_files(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_files(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_files(item)


def permission_warnings(cfg: Any) -> list[str]:
    """One line per file of ``cfg`` (the config itself, each ``{file:}`` secret) that
    others may read or write, naming the file, its mode and the fix. Never the value."""
    files: list[tuple[Path, str]] = [(Path(cfg.path), "config file")]
    seen = {Path(cfg.path).resolve()}
    sources = [cfg.state_password, *(c.options for c in cfg.connections.values())]
    for path in (p for source in sources for p in _secret_files(source)):
        if path.resolve() not in seen:
            seen.add(path.resolve())
            files.append((path, "secret file"))
    out = []
    for path, what in files:
        who = loose_access(path)
        if who is None:
            continue
        mode = stat.S_IMODE(os.stat(path).st_mode)
        out.append(
            f"{what} {path} can be read or changed by {who} (mode {mode:04o}): "
            f"chmod 600 {path}, or chmod 640 and chown root:{SERVICE_GROUP} {path} when the "
            f"service reads it through the {SERVICE_GROUP} group"
        )
    return out
