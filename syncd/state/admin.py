"""Administrative writes to the state store: quarantine retry/clear, forgetting a job.

These are the operator's commands (``syncd quarantine retry|clear``, ``syncd forget``),
not part of a run: each is ONE transaction of its own, and none touches a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from syncd.state.schema import cursors, inflight, objects, quarantine, target_state
from syncd.state.store import IN_CHUNK, StateStore, _db_errors

RETRY_FINGERPRINT = ""
"""What ``retry`` writes as an object's fingerprint: no record ever has it, so the
planner sees every field as changed and writes the whole record again."""


def _selected(job: str, source_ids: Sequence[str] | None):
    """WHERE clause of the quarantine rows of ``job`` (all, or those of ``source_ids``)."""
    clause = quarantine.c.job == job
    if source_ids is not None:
        clause = clause & quarantine.c.source_id.in_(list(source_ids))
    return clause


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    entries: int
    """quarantine entries marked for retry"""
    rewritten: int
    """of them, synced objects whose whole record is written again"""


@_db_errors
def retry_quarantine(
    store: StateStore, job: str, source_ids: Sequence[str] | None = None
) -> RetryOutcome:
    """Make the next run of ``job`` retry its quarantined entries (all, or ``source_ids``).

    An entry is retried when the next run reads it again and plans it again, so: the
    job's cursor is cleared (the next read is complete, even on an incremental source
    that would not list an unchanged entry again), and the fingerprint of every such
    entry that was synced before is cleared (its next plan is an update of every field,
    not "unchanged"). The quarantine rows stay, with their attempts, until a run
    succeeds with them. Returns how many entries were marked.
    """
    if source_ids is not None and len(source_ids) > IN_CHUNK:
        total = RetryOutcome(0, 0)
        for start in range(0, len(source_ids), IN_CHUNK):
            part = retry_quarantine(store, job, source_ids[start : start + IN_CHUNK])
            total = RetryOutcome(total.entries + part.entries, total.rewritten + part.rewritten)
        return total
    with store._write() as conn:
        ids = [
            r[0]
            for r in conn.execute(select(quarantine.c.source_id).where(_selected(job, source_ids)))
        ]
        if not ids:
            return RetryOutcome(0, 0)
        rewritten = 0
        for start in range(0, len(ids), IN_CHUNK):
            result = conn.execute(
                update(objects)
                .where(objects.c.job == job, objects.c.source_id.in_(ids[start : start + IN_CHUNK]))
                .values(fingerprint=RETRY_FINGERPRINT, digests="{}")
            )
            rewritten += result.rowcount or 0
        conn.execute(delete(cursors).where(cursors.c.job == job))
    return RetryOutcome(len(ids), rewritten)


@_db_errors
def clear_quarantine(store: StateStore, job: str, source_ids: Sequence[str] | None = None) -> int:
    """Drop quarantine entries of ``job`` (all, or ``source_ids``). Returns how many.

    The entries themselves are not fixed by this: an entry that still fails is
    quarantined again when a run next reads it."""
    with store._write() as conn:
        if source_ids is None:
            return conn.execute(delete(quarantine).where(_selected(job, None))).rowcount or 0
        dropped = 0
        ids = list(source_ids)
        for start in range(0, len(ids), IN_CHUNK):
            dropped += (
                conn.execute(
                    delete(quarantine).where(_selected(job, ids[start : start + IN_CHUNK]))
                ).rowcount
                or 0
            )
        return dropped


@dataclass(frozen=True, slots=True)
class ForgetOutcome:
    objects: int
    quarantined: int
    had_cursor: bool


@_db_errors
def forget_job(store: StateStore, job: str) -> ForgetOutcome:
    """Reset ``job``'s state: its synced objects, its cursor, its quarantine, its
    in-flight marks and the values its target keeps between runs, in one transaction.
    The run history and the audit log stay (they are history).

    The next run is a first run: it reads completely and, with no synced objects,
    plans creates (or links, for targets that correlate) and never a delete.
    """
    with store._write() as conn:
        count = conn.execute(
            select(func.count()).select_from(objects).where(objects.c.job == job)
        ).scalar_one()
        conn.execute(delete(objects).where(objects.c.job == job))
        quarantined = conn.execute(delete(quarantine).where(quarantine.c.job == job)).rowcount
        had_cursor = bool(conn.execute(delete(cursors).where(cursors.c.job == job)).rowcount)
        # An in-flight mark would have the next run delete an item it never synced.
        conn.execute(delete(inflight).where(inflight.c.job == job))
        conn.execute(delete(target_state).where(target_state.c.job == job))
    return ForgetOutcome(int(count), int(quarantined or 0), had_cursor)
