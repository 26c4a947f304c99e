"""The small error hierarchy of syncd.

``UserError`` and its subclasses are problems a user can fix (bad config, refused
connection, wrong password, a gate that stopped a run). The CLI prints them as one clear
line and exits with their ``exit_code``; no traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the whole message shown to them."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration (or a mapping file) is invalid.

    ``problems`` holds every problem found, each already formatted as
    ``file:line: what is wrong`` so they can all be reported at once.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SecretError(UserError):
    """A secret reference could not be resolved. Never contains the secret itself."""

    exit_code = 2


class ConnectionFailed(UserError):
    """A server could not be reached, refused TLS, or refused the credentials."""

    exit_code = 3


class SourceError(UserError):
    """A source read failed (limit hit, connection lost, bad base). The read counts as
    failed: nothing from it may be taken as 'these objects are gone'."""

    exit_code = 4


class TargetError(UserError):
    """A target could not be used at all (connection lost, table unusable).

    Errors of a single action are reported per action in ``ActionResult``, not raised.
    """

    exit_code = 5


class GateStopped(UserError):
    """A safety gate stopped the run before anything was written."""

    exit_code = 6


class MappingError(Exception):
    """An entry could not be mapped. Affects that entry only: it is quarantined."""


class Busy(UserError):
    """Another run of the same job holds the job's lock."""

    exit_code = 7
