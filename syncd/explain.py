"""``syncd explain JOB DN|ID``: how one entry travels through a job, for writing mappings.

Four steps, each as the engine sees it, values redacted as in plans (secrets
``<secret>``, binary summarised, long text cut):

1. the source entry as read (``Source.read_entries``: for LDAP one base-scope read of
   the DN, or a filter on the id attribute);
2. the mapped record: its key and fields, or why it is skipped or quarantined;
3. the state row: what syncd last pushed (key, target id, DN) and which fields the
   mapping now gives other values than were pushed;
4. the planned action, with its effect on the target (a dry run limited to the entry:
   the same planning, correlation and target look-up as ``syncd plan --only``).

Nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from syncd import planview
from syncd.errors import MappingError


def _source(job: Any) -> Any:
    """The job's source as the engine builds it (attributes narrowed to the mapping's)."""
    end = job.source
    options = end.options
    wanted = getattr(job.mapping, "attributes", None)
    if wanted and hasattr(options, "attributes") and options.attributes is None:
        options = options.model_copy(update={"attributes": sorted(wanted)})
    return end.connection.spec.source_class(end.connection.options, options, job=job.name)


def explain(config: Any, job_name: str, entry: str) -> Iterator[str]:
    """Lines explaining ``entry`` (a DN or a source id) in ``job_name``.

    Raises UserError subclasses like ``syncd plan`` (connection, source, config)."""
    from syncd.engine import run_job
    from syncd.state.fingerprint import fingerprint

    job = config.job(job_name)
    is_secret = planview.secret_names(job.mapping)
    source = _source(job)
    try:
        read = source.read_entries([entry])
        changes = list(read.changes)
    finally:
        source.close()
    yield f"Explain {entry} in job {job.name}"
    if not changes:
        yield f"  source: not found ({source.describe()})"
        return
    store = config.open_state(dry_run=True)
    try:
        for change in changes:
            yield from _one(change, job, store, is_secret, fingerprint)
    finally:
        store.close()
    report = run_job(config, job.name, apply=False, only=[entry])
    try:
        plan = report.plan
        yield "4. planned action"
        if plan is None or not len(plan):
            reasons = [k for k in ("unchanged", "skipped", "quarantined") if report.counts.get(k)]
            yield "  none" + (f" ({', '.join(reasons)})" if reasons else "")
            return
        target = planview.open_target(config, job.name)
        notes: list[str] = []
        try:
            for view in planview.views((p.action for p in plan), target, is_secret, notes):
                lines = planview.text_lines(view, is_secret)
                yield "  " + view.action.kind.value + ":" + lines[0][5:]
                yield from ("  " + line[4:] for line in lines[1:])
        finally:
            if target is not None:
                target.close()
        for note in notes:
            yield f"  note: {note}"
    finally:
        if report.plan is not None:
            report.plan.close()


def _one(change: Any, job: Any, store: Any, is_secret: Any, fingerprint: Any) -> Iterator[str]:
    yield "1. source entry"
    yield f"  id: {change.source_id}"
    if change.dn:
        yield f"  dn: {change.dn}"
    for name in sorted(change.attributes):
        values = list(change.attributes[name])
        yield f"  {name}: {planview.show_values(name, values, is_secret)}"
    yield f"2. mapped by {job.mapping_path.name}"

    def lookup(other: str, dn: str, kind: str = "target_id") -> str | None:
        found = store.objects_by_dn(other, [dn])
        state = next(iter(found.values()), None)
        return getattr(state, kind, None) if state is not None else None

    record = None
    try:
        record = job.mapping.map(change, lookup=lookup)
        if record is None:
            yield "  skipped by the mapping (out of scope: a skip condition is true)"
    except MappingError as err:
        yield f"  quarantined: {err}"
    if record is not None:
        yield f"  key: {record.key}"
        for name, value in record.fields.items():
            shown = planview.show_values(name, planview.as_list(value), is_secret)
            yield f"  {name}: {shown}"
    yield "3. state"
    state = store.objects_for(job.name, [change.source_id]).get(change.source_id)
    if state is None:
        yield "  never synced"
        return
    yield f"  key: {state.key}, target id: {state.target_id}, dn: {state.dn}"
    if record is not None:
        _, digests = fingerprint(record.fields)
        old = state.digests or {}
        differ = [n for n in record.fields if old.get(n) != digests.get(n)]
        differ += [n for n in old if n not in record.fields]
        yield "  fields changed since last pushed: " + (", ".join(differ) or "none")
