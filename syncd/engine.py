"""The engine: one run of one job, read -> map -> plan -> gates -> apply -> commit.

:func:`run_job` is the only entry point. Each step has one obvious place:

* read:    :meth:`_Run.read_and_plan` iterates ``Source.read()``
* map:     ``JobConfig.mapping.map(change)`` in :meth:`_Run._plan_batch`
* plan:    :mod:`syncd.planner` (pure), fed one batch of records + their state rows
* gates:   :func:`syncd.gates.check` on the totals of the whole plan
* apply:   :meth:`_Run.apply` hands batches to ``Target.apply()``
* commit:  :meth:`_Run._commit_batch` writes what the target confirmed; the cursor is
           committed last and only when nothing failed.

The plan is spooled to a temporary file rather than held in memory, so a first run over
a large directory stays small while the gates still see the whole plan before any write.
A crash at any point leaves a state from which the next run converges: what the target
confirmed but was not committed is planned again, and every target's create is an
idempotent upsert by key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import pickle
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from syncd import gates, planner
from syncd.config import Config, JobConfig
from syncd.contracts import Action, ActionKind, ActionResult, Change, Op, Read, Source, Target
from syncd.errors import GateStopped, MappingError, SourceError, TargetError, UserError
from syncd.mapping.dn import dn_key
from syncd.runindex import RunIndex

if TYPE_CHECKING:
    from syncd.state import ObjectState

log = logging.getLogger(__name__)
change_log = logging.getLogger("syncd.changes")

READ_BATCH = 500
MAPPING_NOTE = "mapping file digest "
SCOPE_NOTE = "source scope digest "
ONLY_NOTE = "only: "
RETRY_FULL_NOTE = "complete read not finished: the next run reads completely too"
# lookup('people') / lookup("people", 'key') in a mapping file: the job names it reads.
_LOOKUP_JOB = re.compile(r"""lookup\(\s*['"]([^'"]+)['"]""")


@dataclass
class RunReport:
    """What one run did (or, for a dry run, would do)."""

    job: str
    run_id: int | None = None
    status: str = "running"
    """ok | failed | gated | stopped | dry-run"""
    method: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0
    counts: Counter = field(default_factory=Counter)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    plan: Plan | None = None
    """The spooled plan (dry runs only); iterate it, then close() it."""
    report_path: str | None = None

    def summary(self) -> str:
        c = self.counts
        parts = [
            f"{c[k]} {k}"
            for k in ("created", "updated", "deleted", "failed", "quarantined", "skipped")
            if c.get(k)
        ]
        return f"{self.job}: {self.status}, read {c.get('read', 0)}" + (
            ", " + ", ".join(parts) if parts else ", nothing to change"
        )


class _StoppedReading(Exception):
    """The stop event was set while the source was being read."""


class Plan:
    """The actions of one run, spooled to an unlinked temporary file.

    Only the counts per kind and one chunk of rows stay in memory.
    """

    CHUNK = 500
    """Rows pickled together: one pickle per chunk shares its memo (field names,
    repeated strings) across the chunk, several times cheaper than one per row, while
    memory stays bounded by the chunk."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="syncd-plan-")  # noqa: SIM115
        self.counts: Counter = Counter()
        self._closed = False
        self._pending: list[tuple] = []

    def add(self, planned: planner.PlannedAction) -> None:
        a = planned.action
        self.counts[a.kind.value] += 1
        # Plain tuples pickle several times faster than slotted dataclasses.
        self._pending.append(
            (
                a.kind.value,
                a.source_id,
                a.key,
                a.fields,
                a.changed,
                a.target_id,
                a.dn,
                planned.fingerprint,
                planned.digests,
                planned.entry_digest,
            )
        )
        if len(self._pending) >= self.CHUNK:
            self._spill()

    def _spill(self) -> None:
        if self._pending:
            pickle.dump(self._pending, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._pending = []

    def __len__(self) -> int:
        return sum(self.counts.values())

    def _chunks(self) -> Iterator[list[tuple]]:
        # Our own file, written by this process a moment ago: pickle is safe here.
        self._spill()
        self._file.flush()
        self._file.seek(0)
        while True:
            try:
                yield pickle.load(self._file)
            except EOFError:
                return

    def __iter__(self) -> Iterator[planner.PlannedAction]:
        for chunk in self._chunks():
            yield from _unspool(chunk)

    def batches(self, size: int) -> Iterator[list[planner.PlannedAction]]:
        batch: list[planner.PlannedAction] = []
        for chunk in self._chunks():
            for planned in _unspool(chunk):
                batch.append(planned)
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def close(self) -> None:
        if not self._closed:
            self._file.close()
            self._pending = []
            self._closed = True


def _unspool(chunk: list[tuple]) -> Iterator[planner.PlannedAction]:
    kinds = _KINDS
    planned_action = planner.PlannedAction
    for kind, sid, key, fields, changed, target_id, dn, fp, digests, entry in chunk:
        action = Action(kinds[kind], sid, key, fields, changed, target_id, dn)
        yield planned_action(action, fp, digests, entry)


_KINDS = {k.value: k for k in ActionKind}

ENTRY_DIGEST_VERSION = b"1"
"""Part of every entry digest's salt: bump it when what a digest covers changes."""


def entry_digest(salt: bytes, change: Change) -> str:
    """A digest of what a mapping sees of one entry (source id, DN, attributes), salted
    with the mapping file's digest: equal digests mean mapping it again would give the
    same record. ``repr`` is canonical for the values sources hand out (text, bytes,
    numbers, dates); attributes in another order or a value without a stable repr only
    make the digest differ, so the entry is mapped: never a wrong skip. (Not sorted:
    sources list attributes in a stable order, and sorting cost a third more.)

    The bytes hashed are a pickle (half the cost of ``repr`` per entry, which a
    no-change complete read pays for every entry); pickle is as deterministic as
    ``repr`` for these values, and a value it cannot pickle falls back to ``repr``.

    A Change with a ``raw_digest`` (the LDAP source's digest of the entry's bytes, keyed
    with its decoding settings) is digested from that and its source id alone: one
    hash of a few bytes instead of pickling every value, and never equal to a digest
    of decoded values (another prefix)."""
    h = blake2b(salt, digest_size=16)
    raw = change.raw_digest
    if raw is not None:
        h.update(b"raw:" + raw + change.source_id.encode())
        return h.hexdigest()
    seen = (change.source_id, change.dn, change.attributes)
    try:
        h.update(pickle.dumps(seen, 5))
    except Exception:  # a third-party source's odd value type: the old way
        h.update(b"repr:" + repr(seen).encode())
    return h.hexdigest()


def run_job(
    config: Config,
    job_name: str,
    *,
    apply: bool = True,
    allow_deletes: bool = False,
    full: bool = False,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    store: Any = None,
    verify: Callable[[Plan, str | None], None] | None = None,
    only: Sequence[str] | None = None,
) -> RunReport:
    """Run ``job_name`` once.

    ``apply=False`` is a dry run: it reads, maps and plans, writes nothing (no target
    write, no state write, no cursor move) and returns the plan in ``report.plan``.
    ``verify(plan, cursor)`` is called with the whole plan and the cursor the read
    started from, before the gates and any write (under the job lock when applying): it
    raises a UserError to stop the run (``syncd apply`` refuses a stale stored plan).
    ``only`` (source ids or DNs) reads just those entries (``Source.read_entries``):
    no delete is planned from an absence and the cursor is not moved.
    Raises UserError subclasses for user-fixable failures (GateStopped when a gate
    stops an applying run; ConnectionFailed, SourceError, TargetError...). The run
    record in the state store says what happened either way.
    """

    job = config.job(job_name)
    own_store = store is None
    if own_store:
        store = config.open_state(dry_run=not apply)
    try:
        run = _Run(
            config,
            job,
            store,
            apply=apply,
            allow_deletes=allow_deletes,
            full=full,
            stop_event=stop_event or threading.Event(),
            progress=progress,
        )
        run.verify = verify
        run.only = list(only) if only else None
        with _quiet_gc():
            if not apply:
                return run.execute()
            with _job_lock(store, job_name, config.daemon.node) as lock:
                run.lock = lock
                return run.execute()
    finally:
        if own_store:
            store.close()


_gc_lock = threading.Lock()
_gc_runs = 0
_gc_threshold: tuple[int, int, int] = (700, 10, 10)


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector from rescanning, again and again, the objects
    that outlive a run (modules, config, compiled mapping, connections).

    A run allocates a few short-lived objects per entry; each full collection scans
    every long-lived object, which cost about 10% of a 100k-entry run. ``gc.freeze()``
    takes what exists now out of those scans and a higher first threshold makes young
    collections rarer; both are undone when the last concurrent run ends. Memory is
    unaffected: reference counting still frees objects at once, only reference cycles
    frozen here wait for the end of the run.
    """
    global _gc_runs, _gc_threshold
    with _gc_lock:
        if _gc_runs == 0:
            _gc_threshold = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_gc_threshold[0], 5000), *_gc_threshold[1:])
        _gc_runs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs -= 1
            if _gc_runs == 0:
                gc.set_threshold(*_gc_threshold)
                gc.unfreeze()


@contextlib.contextmanager
def _job_lock(store: Any, job: str, node: str) -> Iterator[Any]:
    from syncd.locks import job_lock

    with job_lock(store, job, node=node) as lock:
        yield lock


class _Run:
    def __init__(
        self,
        config: Config,
        job: JobConfig,
        store: Any,
        *,
        apply: bool,
        allow_deletes: bool,
        full: bool,
        stop_event: threading.Event,
        progress: bool,
    ):
        self.config = config
        self.job = job
        self.store = store
        self.apply_mode = apply
        self.allow_deletes = allow_deletes
        self.full = full
        self.stop = stop_event
        self.progress = progress and sys.stderr.isatty()
        self.report = RunReport(job=job.name)
        self.lock: Any = None
        self.quarantine: list[tuple[str, str | None, str]] = []
        self.previously_quarantined: set[str] = set()
        self.mapped_ok_quarantined: list[str] = []
        # Source ids whose fate this read decided (upserted, present, deleted, skipped,
        # quarantined): after a complete read, synced objects not seen are gone. And
        # record key -> (source id, DN) of the record that claimed it in this read: two
        # entries mapping onto one target item must not overwrite each other (nor
        # share it, so that deleting one would delete the other's item). On disk past
        # a memory limit (a million entries' ids and keys are ~400 MB as Python objects).
        self.index = RunIndex()
        # How many of the ids the read listed have a state row: when that is every
        # state row, no synced object can be unseen and the pass that would look for
        # them (every state id streamed against the index) is skipped.
        self.seen_known = 0
        self._synced: int | None = None
        self.dn_moves: list[tuple[Any, str | None]] = []
        self._dn_cache: dict[tuple[str, str], Any] = {}
        self.reporter: Any = None
        self.verify: Callable[[Plan, str | None], None] | None = None
        self.only: list[str] | None = None
        # Source ids with a failed action in this run. A key change is a delete of the
        # old item and a create of the new one: if the delete failed, the state must
        # keep the old key (even though the create worked) so the next run retries it.
        self.failed_sids: set[str] = set()
        self.read_complete = False
        # Source id -> actions a dead run handed to the target without committing their
        # outcome; such objects are written again (see planner.plan_reverify).
        self.inflight: dict[str, list[Any]] = {}
        self.reverified: set[str] = set()
        try:
            text = job.mapping_path.read_bytes()
            self.mapping_digest = hashlib.sha256(text).hexdigest()[:16]
        except OSError:
            self.mapping_digest = ""
            text = b""
        # Entries read again unchanged are not mapped again (their entry digest equals
        # the state's). Not for mappings that look objects up: the looked-up objects
        # may have changed while the entry did not.
        self.entry_salt: bytes | None = (
            ENTRY_DIGEST_VERSION + self.mapping_digest.encode()
            if self.mapping_digest and b"lookup" not in text
            else None
        )
        self.skip_unchanged = False
        # Source id -> entry digest of synced objects whose record did not change but
        # whose stored entry digest is stale or missing (committed with the plan).
        self.entry_digests: dict[str, str] = {}
        # No synced object at all (a first run): no state row to fetch per batch.
        self.state_empty = False
        self.write_failed: list[str] = []
        self.plan_applied = False
        self.failed_deletes = 0
        self.readback: Any = None
        self.drift: Counter = Counter()
        # Keys the target found edited or removed by hand (Target.drift): planned again
        # with every field; the values the target keeps are committed with the cursor.
        self.repair_keys: set[str] = set()
        self.target_values: dict[str, str | None] = {}

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunReport:
        started = time.monotonic()
        rep = self.report
        if not self.full and not self.only and self._last_run_asked_for_full():
            self.full = True
            rep.notes.append("the last run read completely but did not finish: complete read")
        if self.apply_mode:
            # The job lock is held: a run of this job still "running" is dead.
            if self.store.mark_interrupted(self.job.name):
                rep.notes.append("an earlier run of this job was killed: marked interrupted")
            rep.run_id = self.store.start_run(
                self.job.name, method="", node=self.config.daemon.node
            )
        source = target = None
        plan: Plan | None = None
        try:
            source = self._make_source()
            target = self._make_target()
            # (an --only run leaves marks of a dead run to the next regular run)
            self.inflight = {} if self.only else self.store.inflight(self.job.name)
            if self.inflight and not self.full and not self.only:
                # The dead run may have written what only its complete read found (a
                # delete, a mapping change), and an orphan create leaves no state row:
                # only a complete read decides every marked object again.
                self.full = True
                rep.notes.append(
                    f"a run died between writing {len(self.inflight)} object(s) and "
                    "committing them: complete read, and they are written again"
                )
            cursor = None if self.full else self.store.get_cursor(self.job.name)
            if self.only:
                # A few entries only: the cursor, complete reads and the mapping's
                # digest stay for the next regular run (which must not skip them).
                cursor = None
                rep.notes.append(f"{ONLY_NOTE}{len(self.only)} asked for")
            scope_digest = _digest(source.scope())
            if cursor is not None and not self.full:
                changed = self._changed_lookup_job()
                if changed is not None:
                    # Members resolved through lookup('job') may now resolve
                    # differently, yet this job's own entries did not change: only a
                    # complete read maps them again.
                    self.full = True
                    rep.notes.append(
                        f"job {changed} changed since this job last ran: complete read so "
                        "that looked-up members follow"
                    )
                elif self._mapping_changed():
                    # An incremental read only maps what changed in the source: the
                    # other records would keep the old mapping's values until a
                    # periodic full read.
                    self.full = True
                    rep.notes.append("mapping file changed since the last run: complete read")
                elif self._noted_changed(SCOPE_NOTE, scope_digest):
                    # From the old cursor an incremental read lists what changed in the
                    # old scope: entries that left it would stay, new ones never come.
                    self.full = True
                    rep.notes.append(
                        "source scope changed since the last run (base, filter, attributes, "
                        "bind account or query): complete read"
                    )
            if self.apply_mode and self.mapping_digest and not self.only:
                rep.notes.append(MAPPING_NOTE + self.mapping_digest)
            if self.apply_mode:
                rep.notes.append(SCOPE_NOTE + scope_digest)
            quarantined = self.store.quarantine(self.job.name)
            self.previously_quarantined = {q.source_id for q in quarantined}
            # Entries whose create/update the target refused: retried by their id, so
            # that one bad row does not need a complete read (nor hold the cursor).
            self.write_failed = [
                q.source_id for q in quarantined if q.reason.startswith(_WRITE_FAILED)
            ]
            # EXISTS, not COUNT(*): counting every object of a large job cost an
            # incremental run time proportional to the directory; the count is taken
            # only when a gate needs it (nothing is committed before the gates).
            self.state_empty = not self.store.has_objects(self.job.name)
            correlating = self._correlating(target)
            # A reconciling run (--full, or a complete read the engine forces) also reads
            # the target back when it can, so what was edited or deleted there by hand is
            # repaired (drift). Not on every complete read of the source: `changes: full`
            # jobs would read the whole target on every run.
            verifying = (
                self.full and not self.only and type(target).read_back is not Target.read_back
            )
            if correlating or self.apply_mode or verifying:
                target.open()
            if verifying:
                self.readback = target.read_back()
            # Not for --only runs (they read a few entries, so could not repair) nor for
            # a stored plan being applied (it must apply exactly what was shown).
            if (
                self.apply_mode
                and not self.only
                and self.verify is None
                and self._target_drift(target)
            ):
                cursor = None
            # A run that verifies the target compares every record with it: map them all.
            self.skip_unchanged = self.entry_salt is not None and self.readback is None
            plan, outcome = self.read_and_plan(source, target if correlating else None, cursor)
            if self.verify is not None:
                self.verify(plan, cursor)
            self.read_complete = outcome.complete
            rep.method = outcome.method
            rep.notes.extend(outcome.notes)
            deletes = plan.counts.get("delete", 0) + rep.counts.get("disable", 0)
            needs_count = not self.state_empty and (
                deletes or (outcome.complete and not rep.counts["read"])
            )
            totals = gates.PlanTotals(
                synced_before=self._synced_before() if needs_count else 0,
                read=rep.counts["read"],
                complete=outcome.complete,
                deletes=deletes,
            )
            try:
                rep.notes.extend(
                    gates.check(totals, self.job.max_deletes, allow_deletes=self.allow_deletes)
                )
            except GateStopped as err:
                if self.apply_mode:
                    raise
                rep.status = "gated"
                rep.notes.append(f"a real run would stop here: {err}")
            if not self.apply_mode:
                rep.status = rep.status if rep.status == "gated" else "dry-run"
                rep.counts.update(plan.counts)
                rep.plan, plan = plan, None
                return rep
            self._open_reporter()
            self.apply(target, plan, outcome)
        except _StoppedReading:
            # SIGTERM while reading: nothing was written; the next run reads again.
            rep.status = "stopped"
            rep.notes.append("stopped while reading; nothing was written")
        except GateStopped as err:
            rep.status, rep.error = "gated", str(err)
            raise
        except UserError as err:
            rep.status, rep.error = "failed", str(err)
            raise
        except BaseException as err:
            rep.status, rep.error = "failed", f"internal error: {type(err).__name__}: {err}"
            raise
        finally:
            rep.duration = time.monotonic() - started
            self.index.close()
            if plan is not None:
                plan.close()
            for end in (source, target):
                if end is not None:
                    with contextlib.suppress(Exception):
                        end.close()
            if (
                self.apply_mode
                and (self.read_complete or self.full)
                and rep.status in ("failed", "stopped", "gated")
                and not (self.plan_applied and not self.failed_deletes)
            ):
                # What only a complete read finds (a delete of an object that vanished)
                # is found again only by another complete read; an incremental next
                # run from the kept cursor would not retry it.
                rep.notes.append(RETRY_FULL_NOTE)
            if self.apply_mode and rep.run_id is not None:
                self._finish_run()
        return rep

    def _mapping_changed(self) -> bool:
        """True when the mapping file differs from the one the last successful run used
        (as recorded in that run's notes; unknown counts as unchanged)."""
        if not self.mapping_digest:
            return False
        return self._noted_changed(MAPPING_NOTE, self.mapping_digest)

    def _noted_changed(self, prefix: str, value: str) -> bool:
        """True when the last successful run noted ``prefix`` with another value than
        ``value`` (a run without that note counts as unchanged)."""
        last_ok = next(
            (r for r in self.store.runs(self.job.name, limit=50) if _regular_ok(r)), None
        )
        if last_ok is None:
            return False
        used = [n for n in (last_ok.notes or []) if n.startswith(prefix)]
        return bool(used) and used[0] != prefix + value

    def _last_run_asked_for_full(self) -> bool:
        """True when this job's latest run read completely and then did not finish
        (failed writes, stopped, gated): its deletes must be found again."""
        try:
            last = [r for r in self.store.runs(self.job.name, limit=10) if not _only_run(r)]
        except Exception:  # the run itself reports an unusable store
            return False
        return bool(last) and RETRY_FULL_NOTE in (last[0].notes or [])

    def _finish_run(self) -> None:
        rep = self.report
        with contextlib.suppress(Exception):
            if self.reporter is not None:
                rep.report_path = str(self.reporter.finish(rep))
        if rep.report_path:
            rep.notes.append(f"report: {rep.report_path}")
        try:
            self.store.finish_run(
                rep.run_id,
                status=rep.status,
                counts=dict(rep.counts),
                error=rep.error,
                notes=list(rep.notes),
                method=rep.method or None,
            )
        except Exception:  # the run's own outcome matters more than its record
            log.exception("could not record the end of run %s", rep.run_id)

    def _changed_lookup_job(self) -> str | None:
        """A job this job's mapping looks members up in (``lookup('people')``) whose
        objects were written after this job's last successful run started, if any."""
        try:
            text = self.job.mapping_path.read_text(encoding="utf-8")
        except OSError:
            return None
        jobs = set(_LOOKUP_JOB.findall(text)) - {self.job.name}
        if not jobs:
            return None
        last_ok = next(
            (r for r in self.store.runs(self.job.name, limit=50) if _regular_ok(r)), None
        )
        if last_ok is None:
            return None
        for job in sorted(jobs):
            changed = self.store.last_change(job)
            if changed is not None and changed >= last_ok.started:
                return job
        return None

    # ------------------------------------------------------------ construction
    def _make_source(self) -> Source:
        end = self.job.source
        options = end.options
        wanted = getattr(self.job.mapping, "attributes", None)
        if wanted and hasattr(options, "attributes") and options.attributes is None:
            options = options.model_copy(update={"attributes": sorted(wanted)})
        return end.connection.spec.source_class(end.connection.options, options, job=self.job.name)

    def _make_target(self) -> Target:
        end = self.job.target
        return end.connection.spec.target_class(
            end.connection.options, end.options, job=self.job.name
        )

    def _target_drift(self, target: Target) -> bool:
        """Ask the target what changed in it outside syncd. True when something must be
        repaired: then the read is complete, so the source lists those records."""
        if type(target).drift is Target.drift:
            return False
        job = self.job.name
        drift = target.drift(
            self.store.get_target_state(job), lambda: (o.key for o in self.store.iter_objects(job))
        )
        if drift is None:
            return False
        self.target_values = dict(drift.values)
        self.report.notes.extend(drift.notes)
        if not drift.keys:
            return False
        self.repair_keys = set(drift.keys)
        self.report.counts["drifted"] += len(drift.keys)
        self.report.notes.append(
            f"{len(drift.keys)} item(s) changed or removed in the target outside syncd: "
            "complete read to write them again"
        )
        self.full = True
        return True

    def _correlating(self, target: Target) -> bool:
        return self.job.section.correlate and type(target).correlate is not Target.correlate

    def _open_reporter(self) -> None:
        """A run report (joiners, movers, leavers...) when the job asks for one."""
        directory = self.job.report_dir
        if directory is None:
            return
        from syncd.report import RunReporter

        self.reporter = RunReporter(
            directory, self.job.name, self.report.run_id, not self.apply_mode
        )

    # -------------------------------------------------------- read, map, plan
    def read_and_plan(
        self, source: Source, correlator: Target | None, cursor: str | None
    ) -> tuple[Plan, Any]:
        """Read every change, map it, plan it into a spooled Plan. Returns the plan and
        the read's outcome. Raises SourceError if the read did not end normally."""
        plan = Plan()
        try:
            read: Read = (
                source.read_entries(self.only) if self.only else source.read(cursor, full=self.full)
            )
            batch: list[Change] = []
            with self._progress("reading") as tick:
                for change in read.changes:
                    if self.stop.is_set():
                        raise _StoppedReading
                    batch.append(change)
                    if len(batch) >= READ_BATCH:
                        self._plan_batch(batch, plan, correlator)
                        tick(len(batch))
                        batch = []
                if batch:
                    self._plan_batch(batch, plan, correlator)
                    tick(len(batch))
            outcome = read.outcome
            if outcome is None:
                raise SourceError(f"{source.describe()}: the read ended without an outcome")
            if not outcome.complete and not self.only:
                self._retry_failed_writes(source, plan, correlator, outcome)
            if outcome.complete:
                # _unseen_objects yields only objects the read did not see (the run
                # index answers in batches), so no id is left to be "seen" here.
                if self.seen_known < self._synced_before():
                    for planned in planner.plan_unseen(self._unseen_objects(), ()):
                        plan.add(planned)
                self._plan_unseen_inflight(plan)
                if self.readback is not None:
                    self._note_orphans()
                # Quarantined entries the source no longer lists are gone: so is their
                # quarantine entry (a synced one leaves it when its delete is confirmed).
                gone = self.index.unseen(self.previously_quarantined)
                synced = self.store.objects_for(self.job.name, gone) if gone else {}
                self.mapped_ok_quarantined.extend(sid for sid in gone if sid not in synced)
            if self.drift:
                self.report.notes.append(_drift_note(self.drift))
            return plan, outcome
        except BaseException:
            plan.close()
            raise

    def _retry_failed_writes(
        self, source: Source, plan: Plan, correlator: Target | None, outcome: Any
    ) -> None:
        """Read again, by id, the entries whose write failed in an earlier run and that
        this (incremental) read did not list, and plan them like any change."""
        ids = self.index.unseen(self.write_failed)
        if not ids:
            return
        retry = source.read_entries(ids)
        changes = [c for c in retry.changes if c.op is Op.UPSERT]
        for start in range(0, len(changes), READ_BATCH):
            self._plan_batch(changes[start : start + READ_BATCH], plan, correlator)
        outcome.notes.append(f"retried {len(changes)} entry(ies) whose write failed before, by id")

    def _unseen_objects(self) -> Iterator[Any]:
        """State rows of the synced objects this read did not see (ids streamed, the
        few unseen rows fetched in batches)."""
        chunk: list[str] = []
        for source_id in self.store.iter_source_ids(self.job.name):
            chunk.append(source_id)
            if len(chunk) >= READ_BATCH:
                if unseen := self.index.unseen(chunk):
                    yield from self.store.objects_for(self.job.name, unseen).values()
                chunk = []
        if chunk and (unseen := self.index.unseen(chunk)):
            yield from self.store.objects_for(self.job.name, unseen).values()

    def _synced_before(self) -> int:
        """The job's objects in the state before this run wrote any (counted once: the
        read and the gates both ask, and nothing writes objects in between)."""
        if self._synced is None:
            self._synced = self.store.count_objects(self.job.name)
        return self._synced

    def _unchanged(
        self, changes: list[Change], digests: list[str | None]
    ) -> tuple[set[int], dict[str, ObjectState]]:
        """Positions in ``changes`` of the upserts read exactly as when they were last
        mapped (equal entry digest) that nothing else asks to plan again, and the state
        rows of all the other entries. Two queries where one would do, but the first
        reads two short columns and the second only the rows of entries that are
        planned: a no-change complete read builds no state object at all."""
        upsert = Op.UPSERT
        stored = self.store.entry_digests_for(
            self.job.name, [c.source_id for c in changes if c.op is upsert]
        ).get
        quarantined = self.previously_quarantined
        inflight = self.inflight
        unchanged: set[int] = set()
        for at, (change, digest) in enumerate(zip(changes, digests, strict=True)):
            sid = change.source_id
            if (
                digest is not None
                and stored(sid) == digest
                and sid not in quarantined
                and sid not in inflight  # possibly written: plan it afresh
            ):
                unchanged.add(at)
        if unchanged and self.repair_keys:
            # Edited in the target (drift): planned again, whatever the source says.
            repair = self.repair_keys
            keys = self.store.keys_for(self.job.name, [changes[at].source_id for at in unchanged])
            unchanged = {at for at in unchanged if keys.get(changes[at].source_id) not in repair}
        rest = [c.source_id for at, c in enumerate(changes) if at not in unchanged]
        return unchanged, self.store.objects_for(self.job.name, rest) if rest else {}

    def _plan_batch(self, changes: list[Change], plan: Plan, correlator: Target | None) -> None:
        counts = self.report.counts
        counts["read"] += len(changes)
        salt = self.entry_salt
        upsert = Op.UPSERT
        digests = [
            entry_digest(salt, c) if salt is not None and c.op is upsert else None for c in changes
        ]
        unchanged_at: set[int] = set()
        if self.state_empty:
            states = {}
        elif self.skip_unchanged:
            unchanged_at, states = self._unchanged(changes, digests)
        else:
            states = self.store.objects_for(self.job.name, [c.source_id for c in changes])
        # The loop runs once per entry of the directory: names bound once per batch.
        index = self.index
        index.prefetch([c.source_id for c in changes])
        is_seen = index.is_seen
        seen_add = index.add_seen
        get_state = states.get
        map_record = self.job.mapping.map
        lookup = self._lookup
        plan_add = plan.add
        unchanged = 0
        known = 0
        quarantined_before = self.previously_quarantined
        # Pass 1: map. Pass 2 needs every key this batch claims, to ask the state in
        # one query which other objects already hold them.
        mapped: list[tuple[Change, Any, Any, str | None]] = []
        claimed: list[str] = []
        for at, change in enumerate(changes):
            sid = change.source_id
            state = get_state(sid)
            if change.op is upsert:
                if is_seen(sid):
                    # Listed twice in one read (a SQL view with a join, an overlap): the
                    # first listing decides, so two versions never take turns every run.
                    counts["duplicate"] += 1
                    log.warning("%s listed twice in one read; the first listing is used", sid)
                    continue
                first = True
            else:
                first = not is_seen(sid)  # (a delete or present after an upsert of it)
            seen_add(sid)  # whatever happens below, the read decided this object's fate
            if first and (state is not None or at in unchanged_at):  # unchanged: known
                known += 1
            if change.op is not upsert:
                if change.op is Op.PRESENT:
                    unchanged += 1
                elif change.op is Op.DELETE and state is not None:
                    # accounted for: a complete read must not plan its delete again
                    plan_add(planner.plan_delete(state))
                if change.op is Op.DELETE and sid in self.inflight:
                    self._plan_orphans(plan, sid, state)
                elif change.op is Op.DELETE and sid in self.previously_quarantined:
                    self.mapped_ok_quarantined.append(sid)  # never synced, now gone
                continue
            if at in unchanged_at:
                # Read exactly as when it was last mapped, with the same mapping: the
                # same record, so nothing to plan (the cheap path of a no-change
                # complete read).
                unchanged += 1
                continue
            digest = digests[at]
            try:
                record = map_record(change, lookup=lookup)
            except MappingError as err:
                # A bad entry must not look deleted: it counts as seen, nothing is planned.
                self._quarantine(sid, change.dn, str(err))
                continue
            if record is None:  # skipped by the mapping: out of scope, so gone if synced
                counts["skipped"] += 1
                if state is not None:
                    plan_add(planner.plan_delete(state))
                if sid in self.inflight:
                    self._plan_orphans(plan, sid, state)
                elif sid in self.previously_quarantined:
                    self.mapped_ok_quarantined.append(sid)  # out of scope now
                continue
            if state is None or state.key != record.key:
                claimed.append(record.key)
            mapped.append((change, state, record, digest))
        self.seen_known += known
        holders = self._key_holders(claimed)
        index.prefetch_claims(claimed)
        plan_upsert = planner.plan_upsert
        repair = self.repair_keys
        for change, state, record, digest in mapped:
            sid, key = change.source_id, record.key
            if repair and state is not None and state.key in repair:
                # Edited by hand in the target: plan it as if nothing had been pushed.
                state = dataclasses.replace(state, fingerprint="", digests={})
            owner = index.owner(key)
            if owner is None and (state is None or state.key != key):
                owner = holders.get(key)
            if owner is not None and owner[0] != sid:
                self._quarantine(
                    sid,
                    change.dn,
                    f"record key {key!r} is also the key of {owner[1] or owner[0]}: two "
                    "entries cannot share one target item",
                )
                continue
            if state is None or state.key != key:
                # A key the state already gives this object needs no entry: its state
                # row answers any other claimant (via _key_holders), and a no-change
                # run over a large directory keeps no tuple per entry.
                index.claim(key, sid, change.dn)
            if self.readback is not None and state is not None and state.key == key:
                why = self.readback.differs(state, record.fields)
                if why is not None:
                    # Hand-edited or deleted in the target: the state no longer tells
                    # what the item holds, so every field is written again.
                    self.drift[why] += 1
                    counts["drift"] += 1
                    state = planner.distrust(state)
            if sid in self.inflight:
                self.reverified.add(sid)
                counts["rewritten"] += 1
                marks = [m for m in self.inflight[sid] if self._orphan_key_free(m.key, sid)]
                planned = planner.plan_reverify(sid, key, record.fields, change.dn, state, marks)
            else:
                planned = plan_upsert(sid, key, record.fields, change.dn, state)
            if not planned:
                unchanged += 1
                if sid in quarantined_before:
                    # Nothing to write: it leaves the quarantine now. One with actions
                    # leaves it when the target confirms them (else its attempts grow).
                    self.mapped_ok_quarantined.append(sid)
                if state.dn != change.dn:
                    # Renamed but the record is the same: only the state learns the new
                    # DN (group member look-ups go by DN).
                    self.dn_moves.append(
                        (dataclasses.replace(state, entry_digest=digest), change.dn)
                    )
                elif digest is not None and state.entry_digest != digest:
                    self.entry_digests[sid] = digest  # so the next run skips it
                continue
            if any(planner.is_disable(p.action) for p in planned):
                counts["disable"] += 1
            for item in planned:
                if item.action.kind is not ActionKind.DELETE:
                    item.entry_digest = digest
                if correlator is not None and item.action.kind is ActionKind.CREATE:
                    item = self._correlate(correlator, item)
                    if item is None:
                        continue
                plan_add(item)
        if unchanged:
            counts["unchanged"] += unchanged
        index.flush()

    def _note_orphans(self) -> None:
        """Count the target's own items that no synced object claims (a state reset, an
        old job): reported, never deleted, since another job may write the same place."""
        known = {state.key for state in self.store.iter_objects(self.job.name)}
        known.update(self.index.claimed_keys())
        orphans = sum(1 for _ in self.readback.orphans(known))
        if orphans:
            self.drift["orphaned"] += orphans

    def _orphan_key_free(self, key: str, sid: str) -> bool:
        """True when no other object claims ``key`` (in this read or in the state), so a
        delete by that key cannot remove another object's item."""
        owner = self.index.owner(key) or self._key_holders([key]).get(key)
        return owner is None or owner[0] == sid

    def _plan_orphans(self, plan: Plan, sid: str, state: Any) -> None:
        """Deletes by key of what a dead run may have written for ``sid``, an object the
        source no longer has (``state``'s own key is deleted by the caller)."""
        self.reverified.add(sid)
        marks = [m for m in self.inflight[sid] if self._orphan_key_free(m.key, sid)]
        keep = {state.key} if state is not None else set()
        for planned in planner.plan_orphans(marks, keep):
            plan.add(planned)

    def _plan_unseen_inflight(self, plan: Plan) -> None:
        """After a complete read: orphans of marked objects the read did not list."""
        gone = self.index.unseen(self.inflight)
        states = self.store.objects_for(self.job.name, gone) if gone else {}
        for sid in gone:
            self._plan_orphans(plan, sid, states.get(sid))

    def _quarantine(self, sid: str, dn: str | None, reason: str) -> None:
        self.quarantine.append((sid, dn, reason))
        self.report.counts["quarantined"] += 1
        job = self.job.name
        log.warning("%s: quarantined %s: %s", job, dn or sid, reason, extra={"job": job})

    def _key_holders(self, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        """Record key -> (source id, DN) of a synced object holding it, for ``keys``
        (one query per 500 keys on the state's (job, key) index; none on a first run)."""
        if self.state_empty or not keys:
            return {}
        from sqlalchemy import select

        from syncd.state.schema import objects

        found: dict[str, tuple[str, str | None]] = {}
        wanted = list(dict.fromkeys(keys))
        with self.store.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    select(objects.c.key, objects.c.source_id, objects.c.dn).where(
                        objects.c.job == self.job.name,
                        objects.c.key.in_(wanted[start : start + 500]),
                    )
                )
                for key, sid, dn in rows:
                    found.setdefault(key, (sid, dn))
        return found

    def _correlate(
        self, target: Target, planned: planner.PlannedAction
    ) -> planner.PlannedAction | None:
        action = planned.action
        matches = target.correlate(action.fields)
        if not matches:
            return planned
        if len(matches) > 1:
            dn_of = getattr(target, "dn_of", None)  # DNs read better than GUIDs
            shown = [(dn_of(m) if dn_of else None) or m for m in matches[:5]]
            reason = (
                "ambiguous: matches "
                + ", ".join(shown)
                + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
            )
            self._quarantine(action.source_id, action.dn, reason)
            self.report.counts["ambiguous"] += 1
            return None
        self.report.counts["correlated"] += 1
        linked = Action(
            ActionKind.UPDATE,
            action.source_id,
            action.key,
            action.fields,
            changed=tuple(action.fields),
            target_id=matches[0],
            dn=action.dn,
        )
        return planner.PlannedAction(
            linked, planned.fingerprint, planned.digests, planned.entry_digest
        )

    def _lookup(self, job: str, dn: str, kind: str = "target_id") -> str | None:
        """For group members: the ``target_id`` (or record ``key``, or ``source_id``) of
        the object with ``dn`` that ``job`` synced; None if it synced none."""
        if kind not in ("target_id", "key", "source_id"):
            raise MappingError(f"lookup kind must be target_id, key or source_id, not {kind!r}")
        cache_key = (job, dn_key(dn))  # the state store compares DNs the same way
        if cache_key not in self._dn_cache:
            if len(self._dn_cache) >= 100_000:  # bounded memory on huge directories
                self._dn_cache.clear()
            found = self.store.objects_by_dn(job, [dn])
            self._dn_cache[cache_key] = next(iter(found.values()), None)
        state = self._dn_cache[cache_key]
        return getattr(state, kind) if state is not None else None

    # ---------------------------------------------------------- apply, commit
    def apply(self, target: Target, plan: Plan, outcome: Any) -> None:
        """Apply the plan batch by batch, committing what each batch confirmed."""
        rep = self.report
        self._commit_quarantine()
        failed = 0
        with self._progress("applying", total=len(plan)) as tick:
            for batch in plan.batches(max(1, target.batch_size)):
                if self.stop.is_set():
                    rep.status = "stopped"
                    rep.notes.append(
                        "stopped before the plan was complete; the rest is applied on the next run"
                    )
                    return
                if self.lock is not None and hasattr(self.lock, "alive") and not self.lock.alive():
                    raise TargetError(
                        "lost the job lock (state store connection lost); "
                        "stopping before another node runs this job too"
                    )
                self._mark_inflight(batch)
                try:
                    results = target.apply([p.action for p in batch])
                except TargetError:
                    rep.counts["failed"] += len(batch)
                    raise
                _test_crash_hook()
                if len(results) != len(batch):
                    raise TargetError(
                        f"{target.describe()} answered {len(results)} results "
                        f"for {len(batch)} actions"
                    )
                failed += self._commit_batch(batch, results)
                tick(len(batch))
        self.plan_applied = True
        if failed and not self.failed_deletes:
            # The refused creates/updates are quarantined and retried by id: the cursor
            # may move on, or one bad row would hold the whole job back for ever.
            rep.status = "failed"
            rep.error = f"{failed} write(s) failed; they are retried by id on the next run"
            if outcome.cursor is not None:
                self.store.commit(self.job.name, cursor=outcome.cursor)
            return
        if failed:
            rep.status = "failed"
            rep.error = f"{failed} write(s) failed; they are retried on the next run"
            rep.notes.append("cursor not advanced because some deletes failed")
            return
        too_many = self._too_many_quarantined()
        if too_many:
            rep.status, rep.error = "failed", too_many
            rep.notes.append("cursor not advanced because too many entries were quarantined")
            return
        if outcome.cursor is not None or self.target_values:
            from syncd.state.store import KEEP

            self.store.commit(
                self.job.name,
                cursor=outcome.cursor if outcome.cursor is not None else KEEP,
                target_values=self.target_values,
            )
        rep.status = "ok"

    def _mark_inflight(self, batch: list[planner.PlannedAction]) -> None:
        """One state commit per batch, before the target sees it: should the process die
        after the target wrote and before :meth:`_commit_batch`, the next run knows
        which objects' state is not to be trusted."""
        from syncd.state import InFlight

        self.store.mark_inflight(
            self.job.name,
            [
                InFlight(a.source_id, a.key, a.kind.value, a.target_id, a.dn)
                for a in (p.action for p in batch)
            ],
        )

    def _too_many_quarantined(self) -> str | None:
        """Why this run must not count as a success because of its quarantine (more
        than the job's ``max_quarantined`` of the entries read, or of the objects synced
        when that is more), or None."""
        from syncd.config import parse_max_deletes

        quarantined = self.report.counts.get("quarantined", 0)
        if not quarantined:
            return None
        limit_text = self.job.section.max_quarantined
        limit = parse_max_deletes(limit_text)
        synced_before = 0 if self.state_empty else self.store.count_objects(self.job.name)
        base = max(self.report.counts.get("read", 0), synced_before)
        allowed = limit if isinstance(limit, int) else limit * base
        if quarantined <= allowed:
            return None
        return (
            f"{quarantined} of {base} entries quarantined, more than max_quarantined "
            f"({limit_text}); fix the entries (syncd status shows why) or raise the limit"
        )

    def _commit_batch(self, batch: list[planner.PlannedAction], results: list[ActionResult]) -> int:
        from syncd.state import ObjectState, QuarantineEntry
        from syncd.state.audit import AuditEntry

        upserts, deletes, unquarantined, problems, applied = [], [], [], [], []
        # Failed deletes keep their in-flight mark: the next run reads completely and
        # plans them again (an orphan's delete has no state row to retry it from).
        failed_deletes: set[str] = set()
        failed = 0
        counts = self.report.counts
        done: Counter = Counter()
        log_changes = change_log.isEnabledFor(logging.INFO)
        reporter = self.reporter
        quarantined_before = self.previously_quarantined
        for planned, result in zip(batch, results, strict=True):
            action = planned.action
            if reporter is not None:
                with contextlib.suppress(Exception):
                    reporter.action(result)
            if not result.ok:
                failed += 1
                self.failed_sids.add(action.source_id)
                if action.kind is ActionKind.DELETE:
                    failed_deletes.add(action.source_id)
                    self.failed_deletes += 1
                counts["failed"] += 1
                reason = f"{action.kind.value} failed: {result.error or 'unknown error'}"
                problems.append(
                    QuarantineEntry.new(self.job.name, action.source_id, action.dn, reason)
                )
                log.warning(
                    "%s: %s %s: %s",
                    self.job.name,
                    action.kind.value,
                    action.dn or action.key,
                    reason,
                    extra={"job": self.job.name},
                )
                continue
            done[action.kind] += 1
            applied.append(AuditEntry.of(self.job.name, self.report.run_id, action, result))
            if log_changes:
                _log_change(self.job.name, action, result)
            if result.field_errors:
                # Written without these fields. The state keeps their digests, so they
                # are sent again when their value changes, not on every run.
                counts["fields refused"] += len(result.field_errors)
                reason = "; ".join(
                    f"field {name} refused by the target: {why}"
                    for name, why in sorted(result.field_errors.items())
                )
                problems.append(
                    QuarantineEntry.new(self.job.name, action.source_id, action.dn, reason)
                )
                log.warning("%s: %s; the rest was written", action.dn or action.key, reason)
            if action.source_id in quarantined_before:
                unquarantined.append(action.source_id)
            if action.kind is ActionKind.DELETE:
                deletes.append(action.source_id)
            elif action.source_id in self.failed_sids:
                continue  # the old item's delete failed: keep its state, retry both
            else:
                upserts.append(
                    ObjectState(
                        source_id=action.source_id,
                        key=action.key,
                        target_id=result.target_id or action.target_id,
                        fingerprint=planned.fingerprint,
                        digests=planned.digests or {},
                        dn=action.dn,
                        entry_digest=planned.entry_digest,
                    )
                )
        for kind, n in done.items():
            counts[_DONE[kind]] += n
        self.store.commit(
            self.job.name,
            upserts=upserts,
            deletes=deletes,
            quarantined=problems,
            # An object with one failed action stays quarantined (its attempts grow).
            unquarantined=[sid for sid in unquarantined if sid not in self.failed_sids],
            settled=[p.action.source_id for p in batch if p.action.source_id not in failed_deletes],
            audit=applied,
        )
        return failed

    def _commit_quarantine(self) -> None:
        from syncd.state import QuarantineEntry

        entries = [
            QuarantineEntry.new(self.job.name, sid, dn, reason)
            for sid, dn, reason in self.quarantine
        ]
        for sid, dn, reason in self.quarantine:
            if self.reporter is not None:
                with contextlib.suppress(Exception):
                    self.reporter.problem(sid, dn, reason)
        moved = [dataclasses.replace(state, dn=dn) for state, dn in self.dn_moves]
        # Marked objects with nothing planned (quarantined by their mapping): the marks
        # would otherwise force a complete read on every run.
        settled = [sid for sid in self.inflight if sid not in self.reverified]
        if entries or self.mapped_ok_quarantined or moved or settled:
            self.store.commit(
                self.job.name,
                upserts=moved,
                quarantined=entries,
                unquarantined=self.mapped_ok_quarantined,
                settled=settled,
            )
        self.store.remember_entry_digests(self.job.name, self.entry_digests)

    # ---------------------------------------------------------------- progress
    @contextlib.contextmanager
    def _progress(self, what: str, total: int | None = None) -> Iterator[Any]:
        if not self.progress:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = [SpinnerColumn(), TextColumn(f"{self.job.name}: {what}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        else:
            columns += [TextColumn("{task.completed} entries")]
        columns.append(TimeElapsedColumn())
        from syncd.logsetup import console

        # The log handler's console: log lines are printed above the bar, not through it.
        with Progress(*columns, transient=True, console=console()) as prog:
            task = prog.add_task(what, total=total)
            yield lambda n: prog.advance(task, n)


def _digest(value: Any) -> str:
    """A short stable digest of a JSON-able value (a source's scope)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _drift_note(drift: Counter) -> str:
    parts = ", ".join(f"{n} {why}" for why, n in sorted(drift.items()))
    repaired = drift.total() - drift.get("orphaned", 0)
    text = f"target drift: {parts}"
    if repaired:
        text += f"; {repaired} written again"
    if drift.get("orphaned"):
        text += "; orphaned items (syncd's name, no synced object) are left alone"
    return text


def _test_crash_hook() -> None:
    """TEST HOOK, for tests/e2e/test_crash_window.py and bench/crash_storm.py only:
    with ``SYNCD_TEST_CRASH_AFTER_APPLY=N`` in the environment the process kills itself
    (SIGKILL, no clean-up) right after the N-th batch was applied by the target and
    before its state commit, the window a real crash hits. Read here and nowhere else."""
    wanted = os.environ.get("SYNCD_TEST_CRASH_AFTER_APPLY")
    if not wanted:
        return
    global _applied_batches
    _applied_batches += 1
    if _applied_batches >= int(wanted):
        os.kill(os.getpid(), signal.SIGKILL)


_applied_batches = 0


def _only_run(run: Any) -> bool:
    """A run of a few entries (--only): not a run later runs may take as their base."""
    return any(n.startswith(ONLY_NOTE) for n in (run.notes or []))


def _regular_ok(run: Any) -> bool:
    return run.status == "ok" and not _only_run(run)


_WRITE_FAILED = ("create failed:", "update failed:")
"""How the quarantine reasons of refused creates/updates begin (see _commit_batch)."""

_DONE = {ActionKind.CREATE: "created", ActionKind.UPDATE: "updated", ActionKind.DELETE: "deleted"}


def _log_change(job: str, action: Action, result: ActionResult) -> None:
    """One line per applied change, naming its job (values are left out: they may be
    personal data)."""
    if not change_log.isEnabledFor(logging.INFO):
        return
    what = action.dn or action.key
    extra = f" fields={','.join(action.changed)}" if action.kind is ActionKind.UPDATE else ""
    detail = f" ({result.detail})" if result.detail else ""
    change_log.info(
        "%s: %s %s key=%s%s%s",
        job,
        action.kind.value,
        what,
        action.key,
        extra,
        detail,
        extra={"job": job},
    )
