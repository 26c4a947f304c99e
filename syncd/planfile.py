"""Stored plans: ``syncd plan JOB --out FILE`` and ``syncd apply FILE``.

A plan file records the exact actions of a plan (for people: each with its effect,
redacted as in ``syncd plan --json``) and digests of everything the plan depends on:

* ``config`` and ``mapping``: the bytes of the config file and of the job's mapping file;
* ``state``: every state row of the job (source id, key, target id, fingerprint, DN);
* ``cursor``: the job's stored cursor;
* ``plan``: one digest per action (kind, ids, key, changed fields, DN and the
  fingerprint of the record's values), combined.

``syncd apply FILE`` checks config and mapping first, then runs the job through the
engine's normal path with a ``verify`` hook: under the job lock, after reading and
planning again and before the gates and any write, it compares the state, the cursor
and the new plan with the file. Anything that moved (a run in between, a source entry
that changed, a target entry a correlation would now link differently) stops it with
:class:`PlanStale` and nothing is written. So what is applied is exactly what was
planned: the values come from the fresh read, and they are proven equal to the
planned ones by their fingerprints. The file is never trusted as data to write.

The file holds no secrets (secret fields are ``<secret>``; digests only), but it does
hold directory data (names, DNs): it is written with mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.errors import UserError

FORMAT = "syncd-plan"
VERSION = 1


class PlanStale(UserError):
    """A stored plan no longer matches the job (state, cursor, config, mapping or
    source moved since it was made): nothing was written."""

    exit_code = 9


class PlanFileError(UserError):
    """A file that is not a readable syncd plan."""

    exit_code = 2


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; "" when it cannot be read."""
    try:
        return _sha(Path(path).read_bytes())
    except OSError:
        return ""


def action_digest(planned: Any) -> str:
    """One planned action: what it does and to which values (by their fingerprint)."""
    a = planned.action
    parts = [
        a.kind.value,
        a.source_id,
        a.key,
        list(a.changed),
        a.target_id,
        a.dn,
        planned.fingerprint,
    ]
    return _sha(json.dumps(parts, ensure_ascii=False).encode())[:32]


def plan_digest(digests: Iterable[str]) -> str:
    """The whole plan; independent of the order the source listed entries in."""
    return _sha("\n".join(sorted(digests)).encode())


def state_digest(store: Any, job: str) -> str:
    """Every state row of ``job`` (streamed in source-id order) plus its cursor."""
    h = hashlib.sha256()
    for obj in store.iter_objects(job):
        row = [obj.source_id, obj.key, obj.target_id, obj.fingerprint, obj.dn]
        h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def cursor_digest(store: Any, job: str) -> str:
    cursor = store.get_cursor(job)
    return _sha((cursor or "").encode()) if cursor is not None else ""


def write(
    path: Path,
    *,
    config: Any,
    job: str,
    options: dict[str, Any],
    report: Any,
    store: Any,
    items: list[dict[str, Any]],
    digests: list[str],
) -> None:
    """Write a plan file (mode 0600, replaced atomically). ``items`` are the actions as
    ``planview.json_item`` shows them, ``digests`` their :func:`action_digest`."""
    for item, digest in zip(items, digests, strict=True):
        item["digest"] = digest
    data = {
        "format": FORMAT,
        "version": VERSION,
        "job": job,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
        "status": report.status,
        "counts": dict(report.counts),
        "notes": list(report.notes),
        "digests": {
            "config": file_digest(config.path),
            "mapping": file_digest(config.job(job).mapping_path),
            "state": state_digest(store, job),
            "cursor": cursor_digest(store, job),
            "plan": plan_digest(digests),
        },
        "actions": items,
    }
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the temporary file existed already
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a plan file. Raises PlanFileError for anything else."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise PlanFileError(f"{path}: cannot read: {err.strerror}") from None
    except ValueError as err:
        raise PlanFileError(f"{path}: not a syncd plan file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanFileError(f"{path}: not a syncd plan file")
    if data.get("version") != VERSION:
        raise PlanFileError(f"{path}: plan file version {data.get('version')} is not supported")
    if not isinstance(data.get("digests"), dict) or not isinstance(data.get("job"), str):
        raise PlanFileError(f"{path}: plan file without job or digests")
    return data


def check_files(data: dict[str, Any], config: Any, path: Path) -> None:
    """Refuse when the config or the mapping file was edited since the plan was made."""
    job = config.job(data["job"])
    digests = data["digests"]
    if file_digest(config.path) != digests.get("config"):
        raise PlanStale(
            f"{path}: the config {config.path} changed since this plan was made; "
            f"nothing was written. Make a new plan: syncd plan {job.name} --out FILE"
        )
    if file_digest(job.mapping_path) != digests.get("mapping"):
        raise PlanStale(
            f"{path}: the mapping {job.mapping_path} changed since this plan was made; "
            f"nothing was written. Make a new plan: syncd plan {job.name} --out FILE"
        )


def verifier(data: dict[str, Any], store: Any, path: Path) -> Any:
    """The engine's ``verify`` hook for ``syncd apply``: raises PlanStale unless the
    state, the cursor and the fresh plan are those of the file."""
    job = data["job"]
    digests = data["digests"]
    again = f"nothing was written. Make a new plan: syncd plan {job} --out FILE"

    def verify(plan: Any, cursor: str | None) -> None:
        if state_digest(store, job) != digests.get("state"):
            raise PlanStale(
                f"{path}: the state of job {job} changed since this plan was made "
                f"(a run in between?); {again}"
            )
        if cursor_digest(store, job) != digests.get("cursor"):
            raise PlanStale(
                f"{path}: the cursor of job {job} moved since this plan was made; {again}"
            )
        fresh = [action_digest(p) for p in plan]
        if plan_digest(fresh) != digests.get("plan"):
            stored = {a.get("digest") for a in data.get("actions", [])}
            new = sum(1 for d in fresh if d not in stored)
            gone = len(stored - set(fresh))
            raise PlanStale(
                f"{path}: the source (or the target) changed since this plan was made: "
                f"{new} action(s) would differ or be new, {gone} planned one(s) no longer "
                f"apply; {again}"
            )

    return verify
