"""``syncd init`` (a starter config) and ``syncd man`` (the man page, roff).

Plain click commands, registered by the main group in :mod:`syncd.cli`.
"""

from __future__ import annotations

from pathlib import Path

import click

from syncd.starter import JOBS


@click.command("init")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--job",
    "jobs",
    multiple=True,
    type=click.Choice([*JOBS, "all"]),
    help="a job to include (repeatable; default: all three)",
)
@click.pass_context
def init_command(ctx: click.Context, path: Path | None, jobs: tuple[str, ...]) -> None:
    """Write a commented starter config (default ./syncd.yaml, or -c FILE) with the
    inventory, address book and HR jobs, or the ones chosen with --job, and copy the
    mapping files they name into mappings/ beside it. Secrets are references. An
    existing config is never overwritten."""
    from syncd.starter import write_starter

    chosen = list(JOBS) if not jobs or "all" in jobs else list(jobs)
    target = path or Path((ctx.obj or {}).get("config_path") or "syncd.yaml")
    for line in write_starter(target, chosen):
        click.echo(line)
    click.echo(
        f"next: edit {target} and its mappings, store the secrets it names, then "
        f"syncd -c {target} validate"
    )


@click.command("man")
def man_command() -> None:
    """Print the syncd(1) man page (roff): syncd man | man -l -"""
    from syncd import __version__
    from syncd.cli import cli
    from syncd.manpage import generate

    click.echo(generate(cli, __version__), nl=False)
