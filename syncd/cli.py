"""The ``syncd`` command line.

User errors (``syncd.errors.UserError``) print one line per problem and exit with the
error's code, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from syncd import __version__
from syncd.config import Config, find_config, load_config
from syncd.errors import ConfigError, UserError

log = logging.getLogger("syncd")


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Interactive commands: warnings by default, plus one line per applied change;
    -v adds the progress notes, -vv debug, -q only warnings and errors. The daemon sets
    its own logging from the config."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    changes = logging.WARNING if quiet else logging.INFO
    try:
        from syncd.logsetup import setup_logging
    except ImportError:  # pragma: no cover - logsetup is part of syncd
        logging.basicConfig(level=min(level, changes), format="%(levelname)s %(name)s: %(message)s")
        return
    setup_logging(format="auto", level=level, change_log_level=changes)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    envvar="SYNCD_CONFIG",
    help="config file (default: $SYNCD_CONFIG, ./syncd.yaml, /etc/syncd/syncd.yaml)",
)
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, quiet: bool) -> None:
    """syncd keeps directories, address books and inventories in sync.

    A job reads changes from a source (LDAP, Active Directory, CSV, SQL), maps them
    and applies the difference to a target (SQL, Exchange, CardDAV, LDAP).
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["verbose"] = verbose
    ctx.obj["quiet"] = quiet
    _setup_logging(verbose, quiet)


def get_config(ctx: click.Context) -> Config:
    """Load the config named on the command line (cached on the context)."""
    if "config" not in ctx.obj:
        ctx.obj["config"] = load_config(find_config(ctx.obj.get("config_path")))
        from syncd.permissions import permission_warnings

        # Through logging, so that under systemd the line carries its journal priority.
        for warning in permission_warnings(ctx.obj["config"]):
            logging.getLogger("syncd.permissions").warning("%s", warning)
    return ctx.obj["config"]


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check the config and every mapping file it names; report all problems."""
    cfg = get_config(ctx)
    secret_problems = _check_secrets(cfg)
    if secret_problems:
        raise ConfigError(secret_problems)
    click.echo(f"{cfg.path}: ok ({len(cfg.connections)} connections, {len(cfg.jobs)} jobs)")
    for name, job in sorted(cfg.jobs.items()):
        schedule = job.schedule
        when = (
            f"cron {schedule.cron}"
            if schedule and schedule.cron
            else f"every {schedule.interval}s"
            if schedule
            else "no schedule"
        )
        click.echo(
            f"  job {name}: {job.source.connection.name} -> "
            f"{job.target.connection.name} via {job.mapping_path.name} ({when}"
            + ("" if job.section.enabled else ", disabled")
            + ")"
        )
        if job.section.description:
            click.echo(f"    {job.section.description}")


def _check_secrets(cfg: Config) -> list[str]:
    """Every secret reference of the config (connections, nested blocks such as
    Exchange's oauth, the state store's password) that does not resolve."""
    from pydantic import BaseModel

    from syncd.secrets import SecretRef

    problems: list[str] = []

    def walk(value: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(value, SecretRef):
            problem = value.check()
            if problem:
                shown = ".".join(str(p) for p in loc)
                problems.append(f"{cfg.where(*loc)}: {shown}: {problem}")
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), (*loc, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, (*loc, i))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*loc, key))

    walk(cfg.state_password, ("state", "password"))
    for conn in cfg.connections.values():
        walk(conn.options, ("connections", conn.name))
    return problems


@cli.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--ldif", is_flag=True, help="the plan as an LDIF change file (LDAP targets)")
@click.option("--full", is_flag=True, help="plan a complete reconciliation, ignoring the cursor")
@click.option("--all", "show_all", is_flag=True, help="list every action (default: 50 a kind)")
@click.option("--check", is_flag=True, help="exit 1 when the plan is not empty (drift check)")
@click.option(
    "--out",
    "out_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also store the plan in FILE (mode 0600) for `syncd apply FILE`",
)
@click.option(
    "--only",
    multiple=True,
    metavar="DN|ID",
    help="plan just this entry (repeatable): no deletes from absence, cursor untouched",
)
@click.pass_context
def plan(
    ctx: click.Context,
    job: str,
    as_json: bool,
    ldif: bool,
    full: bool,
    show_all: bool,
    check: bool,
    out_file: Path | None,
    only: tuple[str, ...],
) -> None:
    """Show what `sync JOB` would change: every action with its DN and each field
    old -> new (secrets never shown). Writes nothing (but FILE with --out)."""
    from syncd.engine import run_job

    cfg = get_config(ctx)
    _only_alone(full, only)
    report = run_job(
        cfg, job, apply=False, full=full, progress=not (as_json or ldif), only=list(only)
    )
    try:
        if out_file is not None:
            _store_plan(cfg, report, out_file, {"full": full, "only": list(only)})
        if ldif:
            _print_plan_ldif(cfg, report)
        elif as_json:
            _print_plan_json(cfg, report)
        else:
            _print_plan_text(cfg, report, limit=None if show_all else 50)
        changes = len(report.plan) if report.plan is not None else 0
    finally:
        if report.plan is not None:
            report.plan.close()
    if check and changes:
        ctx.exit(1)


def _only_alone(full: bool, only: tuple[str, ...]) -> None:
    if full and only:
        raise UserError("--only and --full exclude each other (a few entries, or all)")


@cli.command()
@click.argument("job")
@click.argument("entry", metavar="DN|ID")
@click.pass_context
def explain(ctx: click.Context, job: str, entry: str) -> None:
    """How one entry travels through JOB: its source attributes, the mapped fields, the
    state row and the planned action (values redacted as in plans). Writes nothing."""
    from syncd.explain import explain as run_explain

    for line in run_explain(get_config(ctx), job, entry):
        click.echo(line)


def _store_plan(cfg: Config, report: Any, path: Path, options: dict[str, Any]) -> None:
    """Write the plan file for `syncd apply` (every action, with its effect)."""
    from syncd import planfile, planview

    views, is_secret, _ = _plan_views(cfg, report)
    items = [planview.json_item(v, is_secret) for v in views]
    digests = [planfile.action_digest(p) for p in report.plan]
    store = cfg.open_state(dry_run=True)
    try:
        planfile.write(
            path,
            config=cfg,
            job=report.job,
            options=options,
            report=report,
            store=store,
            items=items,
            digests=digests,
        )
    finally:
        store.close()
    click.echo(
        f"plan stored in {path} (mode 0600: it holds directory data, no secrets); "
        f"apply it with: syncd apply {path}",
        err=True,
    )


@cli.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--allow-deletes",
    is_flag=True,
    help="let this run delete more than max_deletes / from an empty source",
)
@click.pass_context
def apply_plan(ctx: click.Context, file: Path, allow_deletes: bool) -> None:
    """Apply exactly the actions stored by `syncd plan JOB --out FILE`, or refuse
    (exit 9, nothing written) when the state, the cursor, the config, the mapping or
    the source changed since. Gates apply as in `sync`."""
    from syncd import planfile
    from syncd.engine import run_job

    data = planfile.load(file)
    cfg = get_config(ctx)
    if data["job"] not in cfg.jobs:
        raise UserError(f"{file}: job {data['job']!r} is not in {cfg.path}")
    planfile.check_files(data, cfg, file)
    options = data.get("options") or {}
    store = cfg.open_state()
    try:
        report = run_job(
            cfg,
            data["job"],
            apply=True,
            allow_deletes=allow_deletes,
            full=bool(options.get("full")),
            only=[str(x) for x in options.get("only") or []],
            store=store,
            verify=planfile.verifier(data, store, file),
        )
    finally:
        store.close()
    click.echo(f"{report.summary()} in {report.duration:.1f}s (stored plan {file})")
    for note in report.notes:
        click.echo(f"  note: {note}")
    if report.status == "failed":
        click.echo(f"syncd: {report.error}", err=True)
        ctx.exit(1)


def _plan_views(cfg: Config, report: Any, limit: int | None = None) -> Any:
    """(views of the shown actions, secret predicate, notes the view adds); with
    ``limit``, the target is asked only about the first ``limit`` actions of a kind."""
    from syncd import planview

    is_secret = planview.secret_names(cfg.job(report.job).mapping)
    target = planview.open_target(cfg, report.job) if len(report.plan) else None
    notes: list[str] = []
    shown: dict[str, int] = {}

    def wanted() -> Any:
        for planned in report.plan:
            kind = planned.action.kind.value
            shown[kind] = shown.get(kind, 0) + 1
            if limit is None or shown[kind] <= limit:
                yield planned.action

    def gen() -> Any:
        try:
            yield from planview.views(wanted(), target, is_secret, notes)
        finally:
            if target is not None:
                target.close()

    return gen(), is_secret, notes


def _print_plan_text(cfg: Config, report: Any, limit: int | None) -> None:
    from syncd import planview

    plan = report.plan
    counts = report.counts
    click.echo(
        f"Plan for job {report.job} (changes found by {report.method or 'full'} read, "
        f"{counts.get('read', 0)} entries read)"
    )
    lines: dict[str, list[str]] = {"create": [], "update": [], "delete": []}
    views, is_secret, notes = _plan_views(cfg, report, limit)
    for view in views:
        lines[view.action.kind.value].extend(planview.text_lines(view, is_secret))
    for kind in ("create", "update", "delete"):
        n = plan.counts.get(kind, 0)
        if not n:
            continue
        click.echo(f"  {kind} {n}")
        for line in lines[kind]:
            click.echo(line)
        if limit is not None and n > limit:
            click.echo(f"    ... and {n - limit} more (--all lists them)")
    if not len(plan):
        click.echo("  nothing to change")
    for key in ("unchanged", "skipped", "quarantined", "ambiguous", "correlated"):
        if counts.get(key):
            click.echo(f"  {key}: {counts[key]}")
    for note in [*report.notes, *notes]:
        click.echo(f"  note: {note}")


def _print_plan_json(cfg: Config, report: Any) -> None:
    from syncd import planview

    out = sys.stdout
    views, is_secret, notes = _plan_views(cfg, report)
    head = {
        "job": report.job,
        "method": report.method,
        "status": report.status,
        "counts": dict(report.counts),
        "notes": report.notes,
    }
    out.write(json.dumps(head)[:-1] + ', "actions": [')
    first = True
    for view in views:
        item = planview.json_item(view, is_secret)
        out.write(("" if first else ",") + "\n  " + json.dumps(item, ensure_ascii=False))
        first = False
    out.write('\n], "view_notes": ' + json.dumps(notes) + "}\n")


def _print_plan_ldif(cfg: Config, report: Any) -> None:
    """The plan as LDIF change records (``ldapmodify -f`` applies it). Refused for a
    target that is not a directory."""
    from syncd.errors import UserError as _UserError

    if cfg.job(report.job).target.connection.spec.name != "ldap":
        raise _UserError(f"job {report.job}: --ldif needs an LDAP target")
    views, _, notes = _plan_views(cfg, report)
    out = sys.stdout
    out.write(f"# syncd plan for job {report.job}: LDIF change records (ldapmodify -f FILE)\n")
    out.write("# secret attributes are left out; entries already as wanted are not listed\n")
    for view in views:
        a = view.action
        cur = view.current
        out.write(f"\n# {a.kind.value} {view.name} (key {a.key})")
        for note in view.notes:
            out.write(f"\n# {note}")
        out.write("\n")
        if cur is not None and cur.ldif:
            out.write("\n" + cur.ldif)
    for note in notes:
        out.write(f"\n# note: {note}\n")


@cli.command()
@click.argument("job")
@click.option(
    "--allow-deletes",
    is_flag=True,
    help="let this one run delete more than max_deletes / from an empty source",
)
@click.option("--full", is_flag=True, help="complete reconciliation, ignoring the cursor")
@click.option("--progress/--no-progress", default=True, help="progress bar on a terminal")
@click.option("--json", "as_json", is_flag=True, help="print the run report as JSON on stdout")
@click.option(
    "--textfile",
    metavar="DIR",
    envvar="SYNCD_TEXTFILE_DIR",
    help="write the job's metrics to DIR/syncd_JOB.prom for node_exporter (timer mode)",
)
@click.option(
    "--only",
    multiple=True,
    metavar="DN|ID",
    help="sync just this entry (repeatable): no deletes from absence, cursor untouched",
)
@click.pass_context
def sync(
    ctx: click.Context,
    job: str,
    allow_deletes: bool,
    full: bool,
    progress: bool,
    as_json: bool,
    textfile: str | None = None,
    only: tuple[str, ...] = (),
) -> None:
    """Run JOB once: apply the changes and commit the state."""
    from syncd.engine import run_job

    cfg = get_config(ctx)
    _only_alone(full, only)
    import signal
    import threading

    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        log.warning("signal %s: finishing the batch in flight, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    from syncd.cli_ops import FirstRunSummary

    summary = FirstRunSummary(cfg, job, ctx.obj)
    try:
        report = run_job(
            cfg,
            job,
            apply=True,
            allow_deletes=allow_deletes,
            full=full,
            stop_event=stop,
            progress=progress,
            only=list(only),
        )
    except UserError as err:
        if textfile:
            from syncd.cli_ops import write_textfile_after

            write_textfile_after(cfg, job, textfile, err)
        if as_json:
            from syncd.cli_ops import failure_json

            click.echo(failure_json(job, err))
        raise
    finally:
        summary.close()
    summary.note(report)
    from syncd.cli_ops import apply_retention, write_textfile_after

    apply_retention(cfg)
    if textfile:
        write_textfile_after(cfg, job, textfile, report)
    if as_json:
        from syncd.cli_ops import report_json

        click.echo(report_json(report))
        ctx.exit(_SYNC_EXIT.get(report.status, 0))
    click.echo(
        f"{report.summary()} in {report.duration:.1f}s"
        + (f" (method {report.method})" if report.method else "")
    )
    for note in report.notes:
        click.echo(f"  note: {note}")
    if report.status == "failed":
        click.echo(f"syncd: {report.error}", err=True)
    ctx.exit(_SYNC_EXIT.get(report.status, 0))


_SYNC_EXIT = {"failed": 1, "stopped": 8}
"""Exit codes of `sync` for runs that ended without raising: a stopped run (SIGTERM)
did not finish its work, so scripts and timers must not take it for a success."""


@cli.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--runs", default=5, show_default=True, help="runs shown per job")
@click.option(
    "--check",
    is_flag=True,
    help="Nagios plugin: one status line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
)
@click.option("--warning", metavar="AGE", help="--check: warn when the last success is older")
@click.option("--critical", metavar="AGE", help="--check: critical when older (e.g. 6h)")
@click.pass_context
def status(
    ctx: click.Context,
    job: str | None,
    as_json: bool,
    runs: int,
    check: bool,
    warning: str | None,
    critical: str | None,
) -> None:
    """Last runs of each job and the quarantined entries with their reasons.

    --check: CRITICAL when the last run failed or the last success is older than
    --critical (default 3 periods of the schedule, 50 h without one), WARNING when older
    than --warning (default 2 periods, 25 h)."""
    if check:
        from syncd.cli_ops import status_check

        try:
            cfg = get_config(ctx)
        except UserError as err:
            click.echo(f"SYNCD UNKNOWN - {str(err).splitlines()[0]}")
            ctx.exit(3)
        ctx.exit(status_check(cfg, job, warning, critical))

    cfg = get_config(ctx)
    jobs = [cfg.job(job).name] if job else sorted(cfg.jobs)
    next_runs: dict[str, Any] = {}
    try:
        from syncd.scheduling import next_runs as _next_runs

        next_runs = _next_runs(cfg)
    except ImportError:
        pass
    store = cfg.open_state(dry_run=True)
    try:
        data = []
        for name in jobs:
            data.append(
                {
                    "job": name,
                    "next_run": _iso(next_runs.get(name)),
                    "runs": [_run_dict(r) for r in store.runs(name, limit=runs)],
                    "quarantine": [_q_dict(q) for q in store.quarantine(name)],
                    "objects": store.count_objects(name),
                    "report": _report_summary(cfg, name),
                }
            )
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    _print_status(data)


def _report_summary(cfg: Config, job: str) -> str | None:
    """One line about the job's latest run report, if it writes reports."""
    directory = cfg.jobs[job].report_dir
    if directory is None or not directory.is_dir():
        return None
    from syncd.report import latest_report, summary_line

    latest = latest_report(directory, job)
    try:
        return summary_line(latest) if latest else None
    except (OSError, ValueError) as err:
        return f"unreadable report {latest}: {err}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        k: _iso(getattr(run, k, None))
        for k in (
            "id",
            "node",
            "method",
            "status",
            "started",
            "finished",
            "counts",
            "error",
            "notes",
        )
    }


def _q_dict(q: Any) -> dict[str, Any]:
    return {
        k: _iso(getattr(q, k, None))
        for k in ("source_id", "dn", "reason", "first_seen", "last_seen", "attempts")
    }


_COUNT_ORDER = (
    "read",
    "created",
    "updated",
    "deleted",
    "failed",
    "quarantined",
    "skipped",
    "ambiguous",
    "correlated",
)


def _counts_text(counts: dict[str, int]) -> str:
    """'read 3: +1 ~1 -1, 2 quarantined' style summary of a run's counts."""
    if not counts:
        return "no change"
    marks = [
        f"{sign}{counts[k]}"
        for k, sign in (("created", "+"), ("updated", "~"), ("deleted", "-"))
        if counts.get(k)
    ]
    rest = [f"{counts[k]} {k}" for k in _COUNT_ORDER[4:] if counts.get(k)]
    text = f"read {counts.get('read', 0)}: " + (" ".join(marks) or "no change")
    return text + (", " + ", ".join(rest) if rest else "")


def _print_status(data: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    for job in data:
        title = f"job {job['job']}: {job['objects']} objects synced"
        if job["next_run"]:
            title += f", next run {job['next_run']}"
        table = Table(title=title, title_justify="left")
        for col in ("started", "took", "node", "method", "status", "counts", "error"):
            table.add_column(col)
        for run in job["runs"]:
            took = ""
            if run["started"] and run["finished"]:
                from datetime import datetime

                seconds = (
                    datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])
                ).total_seconds()
                took = f"{seconds:.1f}s"
            table.add_row(
                str(run["started"] or "")[:19].replace("T", " "),
                took,
                run["node"] or "",
                run["method"] or "",
                run["status"] or "",
                _counts_text(run["counts"] or {}),
                run["error"] or "",
            )
        if not job["runs"]:
            table.add_row("never run", "", "", "", "", "", "")
        console.print(table)
        if job.get("report"):
            console.print(f"  last report: {job['report']}", markup=False, highlight=False)
        latest = job["runs"][0] if job["runs"] else None
        for note in (latest or {}).get("notes") or []:
            console.print(f"  note: {note}", markup=False, highlight=False)
        if job["quarantine"]:
            q = Table(
                title=f"quarantined in {job['job']} ({len(job['quarantine'])})",
                title_justify="left",
            )
            for col in ("entry", "reason", "attempts", "last seen"):
                q.add_column(col)
            for item in job["quarantine"]:
                q.add_row(
                    item["dn"] or item["source_id"],
                    item["reason"],
                    str(item["attempts"]),
                    str(item["last_seen"] or "")[:19],
                )
            console.print(q)


@cli.command()
def reference() -> None:
    """Print the configuration reference (every option, its default and meaning)."""
    from syncd.reference import generate

    click.echo(generate())


def _register_optional(group: click.Group) -> None:
    """Commands that live in their own modules (daemon, doctor, operator commands)."""
    from syncd.cli_ops import forget_command, history_command, quarantine_group

    group.add_command(quarantine_group, "quarantine")
    group.add_command(forget_command, "forget")
    group.add_command(history_command, "history")
    try:
        from syncd.cli_daemon import daemon_command, doctor_command
    except ImportError:
        return
    group.add_command(daemon_command, "daemon")
    group.add_command(doctor_command, "doctor")
    from syncd.cli_setup import init_command, man_command

    group.add_command(init_command, "init")
    group.add_command(man_command, "man")


_register_optional(cli)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one clear message and an exit code."""
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=argv, prog_name="syncd", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except UserError as err:
        for line in str(err).splitlines() or [type(err).__name__]:
            click.echo(f"syncd: error: {line}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("syncd: interrupted", err=True)
        sys.exit(130)
