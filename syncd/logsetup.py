"""Logging set-up: readable on a terminal, JSON lines under systemd.

``format="auto"`` picks JSON when stderr is not a terminal or when ``$JOURNAL_STREAM`` says
stderr is connected to the journal, and a rich (coloured, aligned) handler on a terminal.

When stderr IS the journal (``$JOURNAL_STREAM`` names the device and inode of the log
stream, as systemd sets it), every line starts with its syslog priority, the
``<N>`` prefix of sd-daemon(3) (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>``
debug): journald strips it and files the line under that priority, so
``journalctl -p warning -u syncd`` works. A ``$JOURNAL_STREAM`` inherited by a program
whose stderr goes elsewhere (a shell started from a service) is ignored.

On a terminal, the log handler and the progress bars share ONE rich console
(:func:`console`), so a log line is printed above a live progress bar instead of
through it.
The ``syncd.changes`` logger (one line per applied change) has a level of its own, so an
administrator can keep a full change log at INFO while the rest logs at WARNING, or the
other way round.

Secrets cannot reach the log through syncd's own code (a ``SecretRef`` prints as a
reference); as a last line of defence, every record is passed through a filter that masks
passwords embedded in URLs (``scheme://user:PASSWORD@host``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import sys
from typing import Any

CHANGES_LOGGER = "syncd.changes"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)")
# Attributes every LogRecord has; anything else was passed in extra= and goes to JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_HANDLER_MARK = "_syncd_handler"


# HTTP credentials as client libraries log them at DEBUG: "Authorization: Basic dXNl..",
# "'Authorization': 'NTLM TlRMTVNT...'", "Bearer eyJ..".
_AUTH_HEADER = re.compile(
    r"(?P<head>(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?\s*"
    r"(?:basic|bearer|ntlm|negotiate|digest)?\s*)(?!\[redacted\]|\*\*\*)[^'\"\s,}]+",
    re.IGNORECASE,
)


def mask_url_passwords(text: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``; also masks HTTP
    ``Authorization`` header values."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _AUTH_HEADER.sub(r"\g<head>***", text)


class RedactFilter(logging.Filter):
    """Masks passwords in URLs and HTTP Authorization headers inside log messages (a
    safety net, not the main defence)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it
            return True
        masked = mask_url_passwords(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _level(value: int | str) -> int:
    if isinstance(value, int):
        return value
    number = logging.getLevelName(value.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {value!r} (DEBUG, INFO, WARNING, ERROR)")
    return number


_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

_console: Any = None


def console() -> Any:
    """The rich Console the terminal log handler writes to (a new stderr console when
    logging is not on a terminal). Progress bars must use this one."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (sd-daemon prefix numbers)."""
    for threshold, priority in _PRIORITY:
        if levelno >= threshold:
            return priority
    return 7


def stream_is_journal(stream: Any = None) -> bool:
    """True when ``$JOURNAL_STREAM`` ("DEVICE:INODE") names ``stream``'s file, i.e. the
    stream is connected to the journal (systemd.exec(5))."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, ValueError, OSError):  # no file descriptor (a test's buffer)
        return False


class PriorityFormatter(logging.Formatter):
    """Prefixes each line of another formatter's output with ``<N>`` (its priority)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = self.inner.format(record)
        return "\n".join(prefix + line for line in text.split("\n"))


def choose_format(format: str, stream: Any = None) -> str:
    """'json' or 'text' for ``format`` (auto/text/json) and the output stream."""
    if format in ("text", "json"):
        return format
    if format != "auto":
        raise ValueError(f"unknown log format {format!r} (auto, text, json)")
    stream = stream or sys.stderr
    if stream_is_journal(stream):
        return "json"
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def setup_logging(
    format: str = "auto",
    level: int | str = logging.INFO,
    change_log_level: int | str | None = None,
    *,
    stream: Any = None,
) -> logging.Handler:
    """Configure the root logger (idempotent: a second call replaces the first's handler).

    ``change_log_level`` is the level of the ``syncd.changes`` logger (default: ``level``):
    INFO logs every applied change, WARNING silences them. Returns the installed handler.
    Raises ValueError for an unknown format or level.
    """
    lvl = _level(level)
    change_lvl = _level(change_log_level) if change_log_level is not None else lvl
    stream = stream or sys.stderr
    chosen = choose_format(format, stream)
    handler: logging.Handler
    journal = stream_is_journal(stream)
    if chosen == "json" or journal:
        handler = logging.StreamHandler(stream)
        inner = JsonFormatter() if chosen == "json" else logging.Formatter("%(name)s: %(message)s")
        handler.setFormatter(PriorityFormatter(inner) if journal else inner)
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        global _console
        _console = Console(file=stream, stderr=stream is sys.stderr)
        handler = RichHandler(
            console=_console,
            show_path=False,
            rich_tracebacks=False,
            markup=False,
            log_time_format="%H:%M:%S",
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(RedactFilter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    # The root passes everything the most verbose of the two loggers wants; the handler
    # does not filter by level, so the changes logger can be more verbose than the rest.
    root.setLevel(lvl)
    changes = logging.getLogger(CHANGES_LOGGER)
    changes.setLevel(change_lvl)
    # Chatty libraries stay at WARNING unless we debug.
    for noisy in ("apscheduler", "urllib3", "httpx", "httpcore", "ldap3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if lvl > logging.DEBUG else lvl)
    return handler
