"""Operator commands: ``syncd quarantine list|retry|clear``, ``syncd forget JOB``, and the
helpers behind ``sync --json`` and ``status --check`` (Nagios plugin conventions).

The main group in :mod:`syncd.cli` registers the commands. Like every command they load
the config named by ``-c`` and print user errors as one line.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from syncd.errors import UserError

log = logging.getLogger(__name__)


def _config(ctx: click.Context) -> Any:
    from syncd.cli import get_config

    return get_config(ctx)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, _dt.datetime) else value


def _when(value: _dt.datetime | None) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


# ------------------------------------------------------------------- quarantine
@click.group("quarantine")
def quarantine_group() -> None:
    """Entries a run could not map or write: list them, retry them, drop them."""


@quarantine_group.command("list")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def quarantine_list(ctx: click.Context, job: str | None, as_json: bool) -> None:
    """List quarantined entries (of JOB, or of every job) with their reason, attempts,
    and when they were first and last seen."""
    cfg = _config(ctx)
    jobs = [cfg.job(job).name] if job else sorted(cfg.jobs)
    with cfg.open_state(dry_run=True) as store:
        entries = [q for name in jobs for q in store.quarantine(name)]
    if as_json:
        data = [
            {
                "job": q.job,
                "source_id": q.source_id,
                "dn": q.dn,
                "reason": q.reason,
                "attempts": q.attempts,
                "first_seen": _iso(q.first_seen),
                "last_seen": _iso(q.last_seen),
            }
            for q in entries
        ]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if not entries:
        click.echo("no quarantined entries" + (f" in job {job}" if job else ""))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(entries)} quarantined entries", title_justify="left")
    for col in ("job", "entry", "reason", "attempts", "first seen", "last seen (UTC)"):
        table.add_column(col)
    for q in entries:
        table.add_row(
            q.job,
            q.dn or q.source_id,
            q.reason,
            str(q.attempts),
            _when(q.first_seen),
            _when(q.last_seen),
        )
    Console(width=max(120, Console().width), highlight=False).print(table)


def _pick(store: Any, job: str, wanted: Sequence[str]) -> list[str] | None:
    """Source ids of the quarantine entries of ``job`` named by ``wanted`` (source ids
    or DNs, case-insensitive); None for all. Raises UserError for a name that is not
    quarantined (so a typo never passes silently)."""
    if not wanted:
        return None
    entries = store.quarantine(job)
    by_name: dict[str, str] = {}
    for q in entries:
        by_name[q.source_id] = q.source_id
        if q.dn:
            by_name[q.dn.lower()] = q.source_id
    missing = [w for w in wanted if w not in by_name and w.lower() not in by_name]
    if missing:
        raise UserError(f"job {job}: not in quarantine: {', '.join(missing)}")
    return list(dict.fromkeys(by_name.get(w) or by_name[w.lower()] for w in wanted))


@quarantine_group.command("retry")
@click.argument("job")
@click.argument("entries", nargs=-1, metavar="[ENTRY]...")
@click.pass_context
def quarantine_retry(ctx: click.Context, job: str, entries: tuple[str, ...]) -> None:
    """Make the next run of JOB retry its quarantined entries (all, or each ENTRY: a
    source id or DN).

    The next run reads the job completely (the cursor is cleared) and writes those
    entries again even if they look unchanged. Nothing is written to the target now.
    """
    from syncd.state.admin import retry_quarantine

    cfg = _config(ctx)
    name = cfg.job(job).name
    with cfg.open_state() as store:
        outcome = retry_quarantine(store, name, _pick(store, name, entries))
    if not outcome.entries:
        click.echo(f"job {name}: no quarantined entries to retry")
        return
    click.echo(
        f"job {name}: {outcome.entries} entries will be retried by the next run "
        f"({outcome.rewritten} of them rewritten in full); the next run reads completely"
    )


@quarantine_group.command("clear")
@click.argument("job")
@click.argument("entries", nargs=-1, metavar="[ENTRY]...")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def quarantine_clear(ctx: click.Context, job: str, entries: tuple[str, ...], yes: bool) -> None:
    """Drop quarantine entries of JOB (all, or each ENTRY: a source id or DN).

    This forgets the error, it does not fix it: an entry that still fails is
    quarantined again when a run next reads it.
    """
    from syncd.state.admin import clear_quarantine

    cfg = _config(ctx)
    name = cfg.job(job).name
    with cfg.open_state() as store:
        ids = _pick(store, name, entries)
        count = len(ids) if ids is not None else len(store.quarantine(name))
        if not count:
            click.echo(f"job {name}: no quarantined entries")
            return
        if not yes:
            click.confirm(f"drop {count} quarantine entries of job {name}?", abort=True)
        dropped = clear_quarantine(store, name, ids)
    click.echo(f"job {name}: dropped {dropped} quarantine entries")


# ----------------------------------------------------------------------- forget
@click.command("forget")
@click.argument("job")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation (scripts)")
@click.pass_context
def forget_command(ctx: click.Context, job: str, yes: bool) -> None:
    """Reset JOB's state: its synced objects, cursor and quarantine.

    The target is not touched. The next run is a first run: it reads completely and
    creates (or links to existing items, for targets that correlate) what the source
    has; with no synced objects left, it deletes nothing. Run history and audit log
    are kept.
    """
    from syncd.state.admin import forget_job

    cfg = _config(ctx)
    name = cfg.job(job).name
    with cfg.open_state() as store:
        synced = store.count_objects(name)
        quarantined = len(store.quarantine(name))
        if not yes:
            click.echo(
                f"job {name}: forget {synced} synced objects, its cursor and "
                f"{quarantined} quarantine entries. The target is not changed. The next run "
                "is a first run: it reads everything and creates or links items, it "
                "deletes nothing (items whose source entry is gone stay in the target)."
            )
            click.confirm("forget this job's state?", abort=True)
        outcome = forget_job(store, name)
    click.echo(
        f"job {name}: forgot {outcome.objects} objects, "
        f"{'the cursor' if outcome.had_cursor else 'no cursor'} and "
        f"{outcome.quarantined} quarantine entries; the next run is a first run "
        "(creates or links, never deletes)"
    )


def apply_retention(cfg: Any) -> None:
    """``state.retention`` after a ``syncd sync``. A failure is logged, never fatal: the
    run itself is done and recorded."""
    from syncd.state.audit import apply_retention as apply

    try:
        with cfg.open_state() as store:
            apply(cfg, store)
    except Exception as err:
        log.warning("retention not applied: %s", str(err).splitlines()[0] if str(err) else err)


# ---------------------------------------------------------------------- history
def parse_since(text: str, now: _dt.datetime) -> _dt.datetime:
    """``7d``/``24h``/``90m`` (that long ago) or an ISO date/time (UTC unless it says
    otherwise). Raises UserError for anything else."""
    from syncd.config import parse_duration

    try:
        return now - _dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since {text!r}: expected a duration (7d, 24h) or a date (2026-12-01, "
            "2026-12-01T08:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


@click.command("history")
@click.argument("job")
@click.option("--since", metavar="WHEN", help="only changes since WHEN (7d, 24h, 2026-12-01)")
@click.option("--dn", metavar="DN", help="only changes of this entry (DN, source id or key)")
@click.option("--limit", default=200, show_default=True, help="most changes shown (the newest)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def history_command(
    ctx: click.Context, job: str, since: str | None, dn: str | None, limit: int, as_json: bool
) -> None:
    """The audit log of JOB: every change a target confirmed, oldest first, with its
    run, DN, key and the names of the fields written (never their values)."""
    from syncd.state.audit import history

    cfg = _config(ctx)
    name = cfg.job(job).name
    when = parse_since(since, _dt.datetime.now(_dt.UTC)) if since else None
    with cfg.open_state(dry_run=True) as store:
        entries = history(store, name, since=when, dn=dn, limit=limit)
    if as_json:
        data = [
            {
                "at": _iso(e.at),
                "job": e.job,
                "run_id": e.run_id,
                "kind": e.kind,
                "source_id": e.source_id,
                "key": e.key,
                "dn": e.dn,
                "target_id": e.target_id,
                "fields": list(e.fields),
            }
            for e in entries
        ]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if not entries:
        click.echo(f"job {name}: no recorded changes" + (" matching" if since or dn else ""))
        return
    for e in entries:
        fields = f"  fields: {', '.join(e.fields)}" if e.fields else ""
        click.echo(
            f"{_when(e.at)}  run {e.run_id}  {e.kind:<6}  {e.dn or e.source_id}  "
            f"key={e.key}{fields}"
        )
    if len(entries) == limit:
        click.echo(f"(the newest {limit}; --limit shows more, --since/--dn narrow it)")


def write_textfile_after(cfg: Any, job: str, directory: str, outcome: Any) -> None:
    """``sync --textfile DIR``: the job's gauges for node_exporter after a run.
    ``outcome`` is the run's report, or the UserError the run raised (a gate, a refused
    connection): that run counts as failed. A file that cannot be written is logged as
    an error; the run's own exit code stands."""
    from syncd.engine import RunReport
    from syncd.errors import GateStopped
    from syncd.metrics import write_textfile

    report = outcome
    if isinstance(outcome, BaseException):
        report = RunReport(job=cfg.job(job).name)
        report.status = "gated" if isinstance(outcome, GateStopped) else "failed"
        report.error = str(outcome)
    try:
        with cfg.open_state() as store:
            write_textfile(directory, report, store, cfg.daemon.node)
    except (OSError, UserError) as err:
        log.error("metrics textfile in %s not written: %s", directory, err)


class FirstRunSummary:
    """On a terminal, a job's first sync (no synced object yet) prints its summary, not
    one line per change (thousands of creates would bury the summary and any warning);
    ``-v`` lists them anyway, and ``syncd history`` has them all. :meth:`close` puts
    the change log's level back."""

    def __init__(self, cfg: Any, job: str, options: dict[str, Any]):
        from syncd.logsetup import CHANGES_LOGGER

        self.job = job
        self.logger = logging.getLogger(CHANGES_LOGGER)
        self.previous: int | None = None
        if options.get("verbose") or options.get("quiet") or not _stderr_is_terminal():
            return
        try:
            with cfg.open_state() as store:
                first = store.count_objects(cfg.job(job).name) == 0
        except UserError:
            return  # the run itself reports an unusable store
        if first and self.logger.isEnabledFor(logging.INFO):
            self.previous = self.logger.level
            self.logger.setLevel(logging.WARNING)

    @property
    def active(self) -> bool:
        return self.previous is not None

    def note(self, report: Any) -> None:
        """Tell, with the run's notes, that the changes were not listed."""
        done = sum(report.counts.get(k, 0) for k in ("created", "updated", "deleted"))
        if self.active and done:
            report.notes.append(
                f"first run: its {done} changes are not listed one by one (-v lists them; "
                f"`syncd history {report.job}` shows them)"
            )

    def close(self) -> None:
        if self.previous is not None:
            self.logger.setLevel(self.previous)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------ sync --json
def report_json(report: Any) -> str:
    """The run report of ``sync --json``: one JSON object."""
    return json.dumps(
        {
            "job": report.job,
            "run_id": report.run_id,
            "status": report.status,
            "method": report.method or None,
            "started": _iso(report.started),
            "duration": round(float(report.duration or 0.0), 3),
            "counts": dict(report.counts),
            "error": report.error,
            "notes": list(report.notes),
            "report_path": report.report_path,
        },
        ensure_ascii=False,
    )


def failure_json(job: str, err: UserError) -> str:
    """``sync --json`` output for a run that raised (gate, refused connection...)."""
    from syncd.errors import GateStopped

    status = "gated" if isinstance(err, GateStopped) else "failed"
    return json.dumps(
        {"job": job, "status": status, "error": str(err), "exit_code": err.exit_code},
        ensure_ascii=False,
    )


# ------------------------------------------------------------- status --check
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
UNSCHEDULED_WARNING = 25 * 3600
"""A job without a schedule (a daily timer, cron): warn after 25 h without success."""


@dataclass
class JobCheck:
    job: str
    state: int
    text: str
    age: float | None
    warning: float
    critical: float
    quarantined: int


def _thresholds(job_cfg: Any, warning: float | None, critical: float | None) -> tuple[float, float]:
    """Warning/critical age of the last success: given, or 2x / 3x the job's period."""
    if job_cfg.schedule is not None:
        from syncd.scheduling import period_seconds

        period = period_seconds(job_cfg.schedule)
        default_w, default_c = 2 * period, 3 * period
    else:
        default_w, default_c = UNSCHEDULED_WARNING, 2 * UNSCHEDULED_WARNING
    w = warning if warning is not None else default_w
    c = critical if critical is not None else max(default_c, w)
    return w, c


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def check_job(
    store: Any, job_cfg: Any, *, warning: float | None, critical: float | None, now: _dt.datetime
) -> JobCheck:
    """The Nagios state of one job from its run history.

    CRITICAL: the latest finished run failed or was stopped by a gate, or the last
    success is older than ``critical`` (or there never was one although the job ran);
    WARNING: the last success is older than ``warning``, or the job never ran; else OK.
    """
    name = job_cfg.name
    w, c = _thresholds(job_cfg, warning, critical)
    runs = [r for r in store.runs(name, limit=50) if r.finished is not None]
    quarantined = len(store.quarantine(name))
    from syncd.state.audit import is_only_run

    # A --only run syncs a few entries: not a success of the job as a whole.
    last_ok = next((r for r in runs if r.status == "ok" and not is_only_run(r.notes)), None)
    age = (now - last_ok.finished).total_seconds() if last_ok else None
    if not runs:
        return JobCheck(name, WARNING, f"{name}: never ran", None, w, c, quarantined)
    latest = runs[0]
    if latest.status in ("failed", "gated"):
        why = (latest.error or latest.status).splitlines()[0][:120]
        since = (now - latest.finished).total_seconds()
        return JobCheck(
            name,
            CRITICAL,
            f"{name}: last run {latest.status} {_ago(since)}: {why}",
            age,
            w,
            c,
            quarantined,
        )
    if last_ok is None:
        return JobCheck(name, CRITICAL, f"{name}: never succeeded", None, w, c, quarantined)
    assert age is not None
    state = CRITICAL if age > c else WARNING if age > w else OK
    text = f"{name}: last success {_ago(age)}"
    if quarantined:
        text += f", {quarantined} quarantined"
    return JobCheck(name, state, text, age, w, c, quarantined)


def status_check(cfg: Any, job: str | None, warning: str | None, critical: str | None) -> int:
    """Print one Nagios status line for JOB (or every job) and return the plugin's exit
    code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (state store or config unusable)."""
    from syncd.config import parse_duration

    try:
        w = parse_duration(warning) if warning else None
        c = parse_duration(critical) if critical else None
        jobs = [cfg.job(job)] if job else [cfg.jobs[n] for n in sorted(cfg.jobs)]
        now = _dt.datetime.now(_dt.UTC)
        with cfg.open_state(dry_run=True) as store:
            checks = [check_job(store, j, warning=w, critical=c, now=now) for j in jobs]
    except (UserError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        click.echo(f"SYNCD UNKNOWN - {first}")
        return UNKNOWN
    if not checks:
        click.echo("SYNCD UNKNOWN - no jobs configured")
        return UNKNOWN
    state = max(ch.state for ch in checks)
    # The problems first: a monitoring UI shows the start of the line.
    ordered = sorted(checks, key=lambda ch: -ch.state)
    perf = []
    for ch in checks:
        age = f"{ch.age:.0f}s" if ch.age is not None else "U"
        perf.append(f"'{ch.job}_age'={age};{ch.warning:.0f};{ch.critical:.0f};0;")
        perf.append(f"'{ch.job}_quarantined'={ch.quarantined};;;0;")
    line = f"SYNCD {STATE_NAMES[state]} - " + "; ".join(ch.text for ch in ordered)
    sys.stdout.write(line + " | " + " ".join(perf) + "\n")
    return state
