"""The man page ``syncd(1)``, generated from the click commands so it cannot drift.

``syncd man > docs/syncd.1`` writes it; the wheel installs it as
``share/man/man1/syncd.1`` (``man syncd`` in a virtualenv whose ``bin`` is on PATH).
``tests/unit/test_manpage.py`` fails while the committed copy is stale.
"""

from __future__ import annotations

import click

SEE_ALSO = "syncd reference (every config option), systemd.exec(5), systemd-creds(1)"

FILES = [
    (
        "/etc/syncd/syncd.yaml",
        "the config file of the service (else ./syncd.yaml, -c FILE or $SYNCD_CONFIG)",
    ),
    (
        "/var/lib/syncd/state.db",
        "the default SQLite state store of /etc/syncd/syncd.yaml (StateDirectory=syncd)",
    ),
    (
        "/etc/credstore/NAME, /run/credstore/NAME",
        "{credential: NAME} secrets when $CREDENTIALS_DIRECTORY is not set (a shell)",
    ),
]

EXIT_STATUS = [
    ("0", "success"),
    ("1", "some writes failed (retried next run), plan --check found drift, a doctor check"),
    ("2", "bad config or secret (systemd: RestartPreventExitStatus=2)"),
    ("3", "a server refused the connection, TLS or the credentials"),
    ("4", "the source read failed"),
    ("5", "the target failed"),
    ("6", "a safety gate stopped the run"),
    ("7", "another run of the job is in progress"),
]


def _esc(text: str) -> str:
    """Text safe in a roff line: backslashes doubled, a leading . or ' escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _para(text: str) -> list[str]:
    out: list[str] = []
    for block in text.strip().split("\n\n"):
        out.append(".PP")
        out.append(_esc(" ".join(line.strip() for line in block.splitlines())))
    return out


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option) or "--help" in param.opts:
            continue  # arguments are in the usage line; --help is everywhere
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{_esc(names)}\\fR", _esc(help_text or "")]
    return out


def generate(group: click.Group, version: str) -> str:
    """The roff source of syncd(1) for ``group`` (the ``syncd`` command)."""
    ctx = click.Context(group, info_name="syncd")
    lines = [
        f'.TH SYNCD 1 "" "syncd {_esc(version)}" "User Commands"',
        ".SH NAME",
        "syncd \\- directory synchronization daemon",
        ".SH SYNOPSIS",
        ".B syncd",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_para(group.help or ""),
        ".SH OPTIONS",
        *_options(group, ctx),
        ".SH COMMANDS",
    ]
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        usage = " ".join(cmd.collect_usage_pieces(sub))
        lines += [".SS", f"\\fBsyncd {_esc(name)}\\fR {_esc(usage)}"]
        lines += _para(cmd.help or cmd.short_help or "")
        if isinstance(cmd, click.Group):
            for sub_name in cmd.list_commands(sub):
                sub_cmd = cmd.get_command(sub, sub_name)
                if sub_cmd is not None:
                    lines += [
                        ".TP",
                        f"\\fB{_esc(sub_name)}\\fR",
                        _esc(sub_cmd.get_short_help_str(80)),
                    ]
        opts = _options(cmd, sub)
        if opts:
            lines += [".PP", "Options:", ".RS", *opts, ".RE"]
    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", f"\\fI{_esc(path)}\\fR", _esc(what)]
    lines.append(".SH EXIT STATUS")
    for code, what in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _esc(what)]
    lines += [".SH SEE ALSO", _esc(SEE_ALSO), ""]
    return "\n".join(lines)
