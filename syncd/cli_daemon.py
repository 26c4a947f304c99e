"""The ``syncd daemon`` and ``syncd doctor`` commands.

They are plain click commands; the main group in :mod:`syncd.cli` registers them
(``cli.add_command(daemon_command)``). They read the config path from
``ctx.obj["config_path"]`` (the group's ``--config/-c``), like every other command.
User errors print one ``syncd: error:`` line per problem and exit with the error's code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click

from syncd.errors import UserError


def _config_path(ctx: click.Context) -> Any:
    from syncd.config import find_config

    obj = ctx.obj or {}
    return find_config(obj.get("config_path"))


def _fail(err: UserError) -> None:
    for line in str(err).splitlines() or [type(err).__name__]:
        click.echo(f"syncd: error: {line}", err=True)
    _exit(err.exit_code)


def _exit(code: int) -> None:
    # SystemExit, not ctx.exit(): click's standalone_mode=False would turn ctx.exit()
    # into a return value that a caller can drop, losing the exit code.
    if code:
        sys.exit(code)


@click.command("daemon")
@click.option("--node", metavar="NAME", help="this node's name (overrides daemon.node)")
@click.pass_context
def daemon_command(ctx: click.Context, node: str | None) -> None:
    """Run every job on its schedule (the systemd service).

    SIGHUP reloads the config (a broken config keeps the running one). SIGTERM finishes
    the batch in flight, commits, and exits 0.
    """
    from syncd.daemon import Daemon

    obj = ctx.obj or {}
    verbose, quiet = obj.get("verbose", 0), obj.get("quiet", False)
    # -v/-vv/-q on the command line win over daemon.log_level in the config.
    level = "DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING" if quiet else None
    try:
        code = Daemon(_config_path(ctx), node=node, log_level=level).run()
    except UserError as err:
        _fail(err)
        return
    _exit(code)


@click.command("doctor")
@click.argument("connection", required=False)
@click.option("--timeout", default=5.0, show_default=True, help="seconds per network step")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def doctor_command(
    ctx: click.Context, connection: str | None, timeout: float, as_json: bool
) -> None:
    """Check connections the way an administrator would.

    Name resolution, TCP reach, StartTLS, TLS and the certificate, bind, base DN, paging
    and change-tracking controls, target access. Checks CONNECTION, or every connection
    and the state store. Exits 1 if a check
    failed; each failure comes with a hint.
    """
    from syncd.config import load_config
    from syncd.doctor import print_report, run_doctor

    try:
        cfg = load_config(_config_path(ctx))
        findings = run_doctor(cfg, connection, timeout=timeout)
    except UserError as err:
        _fail(err)
        return
    if as_json:
        click.echo(json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        print_report(findings, Console(file=sys.stdout, soft_wrap=False))
    failed = sum(f.failed for f in findings)
    if failed:
        if not as_json:
            click.echo(f"{failed} check(s) failed", err=True)
        _exit(1)
