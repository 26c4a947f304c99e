"""The harness protocol of the shared target contract suite.

Every kind of target (SQL on SQLite, SQL on PostgreSQL, Exchange, CardDAV, LDAP...) gets
one :class:`TargetHarness` subclass that knows how to configure that target against a
REAL server and how to read back what the server holds, independently of the Target
class under test. The contract tests in ``test_target_contract.py`` are written once
against this protocol.

How a harness is found (see README.md in this directory):

* the class is decorated with :func:`register` (at import time of the module defining it,
  which must be a pytest plugin: ``tests/servers/fixtures_<kind>.py`` is one);
* a function-scoped fixture named :func:`fixture_name` (``harness_<name>`` with ``-``
  replaced by ``_``) yields a fresh, isolated instance (empty table / collection / OU)
  and calls ``close()`` afterwards;
* its name is listed in ``HARNESSES`` in ``test_target_contract.py``.

Capabilities are class attributes, so tests that need a capability a harness lacks are
simply not generated for it (never skipped).

Data model used by the tests: a record has a key, one text value and one multi-valued
list of strings. :meth:`TargetHarness.fields` turns ``(key, text, multi)`` into the
record ``fields`` this target's mapping would produce, and :meth:`TargetHarness.stored`
reads them back from the server. Values the tests use:

* keys: ASCII letters, digits and ``-`` (like a UUID), at most 40 characters;
* text: non-empty, no leading/trailing white space, may be any Unicode (other scripts,
  emoji with ZWJ sequences, RTL text, combining characters: compared exactly, no
  normalisation), at most 100 characters, no control characters or newlines;
* multi: 0 to 3 values (never more than ``max_multi``), each non-empty, at most 60
  characters, no ``,;:"<>`` or white space at the ends, no two values differing only in case;
  may contain non-ASCII letters. Duplicates (exactly equal values) occur only in the test
  for duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

from syncd.contracts import Target

BAD_PASSWORD = "Wrong-Pa55w0rd-contract"
"""The password a harness must use in :meth:`TargetHarness.bad_credentials_target`;
the tests check it never shows up in an error message."""

CAPABILITIES: dict[str, str] = {
    "credentials": "the target authenticates: bad_credentials_target() is meaningful",
    "down": "down_target() points at a server that does not answer",
    "delete": "a delete action removes the item from the server",
    "soft_delete": "target(soft_delete=True) keeps a deleted item flagged; soft_deleted() "
    "lists the flagged keys; a create/update of a flagged key clears the flag",
    "bad_record": "bad_fields() gives a record the server refuses (alone in its batch)",
    "multi_order": "multi-valued fields keep the order of their values",
    "multi_duplicates": "multi-valued fields keep duplicate values (else they are merged)",
    "read_back": "target.read_back() lists what the server holds, for drift repair",
}


class Stored(NamedTuple):
    """One item as the server holds it, in the tests' data model."""

    key: str
    text: str
    multi: list[str]


class TargetHarness(ABC):
    """One kind of target, configured against a real server. One instance per test."""

    name: ClassVar[str]
    """As listed in HARNESSES, e.g. ``"sql-postgres"``."""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """Subset of :data:`CAPABILITIES`."""
    max_multi: ClassVar[int | None] = None
    """Most values the multi-valued field can hold (None: no limit). Tests use <= 3."""
    apply_timeout: ClassVar[float] = 30.0
    """Seconds within which a down/bad-credentials target must fail."""

    def __init__(self) -> None:
        self._targets: list[Target] = []

    # -- required -------------------------------------------------------------------

    @abstractmethod
    def make_target(self, *, soft_delete: bool = False) -> Target:
        """A configured Target for this harness's empty store, NOT yet opened.
        ``soft_delete=True`` is only asked for when "soft_delete" is a capability."""

    @abstractmethod
    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        """A valid complete record for this target whose values show up in stored()."""

    @abstractmethod
    def stored(self) -> list[Stored]:
        """Every live (not soft-deleted) item the server holds, read directly from the
        server (not through the Target class). Duplicated keys appear twice."""

    # -- per capability -------------------------------------------------------------

    def soft_deleted(self) -> set[str]:
        """Keys of items kept but flagged deleted ("soft_delete")."""
        raise NotImplementedError

    def bad_fields(self, key: str) -> dict[str, Any]:
        """A record the server refuses but that does not break the target ("bad_record")."""
        raise NotImplementedError

    def make_bad_credentials_target(self) -> Target:
        """A target using :data:`BAD_PASSWORD` ("credentials"), not yet opened."""
        raise NotImplementedError

    def make_down_target(self) -> Target:
        """A target pointing at a server that is not there ("down"), not yet opened."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------------

    def target(self, *, soft_delete: bool = False) -> Target:
        """A configured and opened target; closed by :meth:`close`."""
        t = self.make_target(soft_delete=soft_delete)
        self._targets.append(t)
        t.open()
        return t

    def bad_credentials_target(self) -> Target:
        t = self.make_bad_credentials_target()
        self._targets.append(t)
        return t

    def down_target(self) -> Target:
        t = self.make_down_target()
        self._targets.append(t)
        return t

    def stored_by_key(self) -> dict[str, Stored]:
        """stored() as a dict; fails the test if a key is held twice."""
        items = self.stored()
        keys = [s.key for s in items]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        assert not dupes, f"{self.name}: keys stored more than once: {dupes}"
        return {s.key: s for s in items}

    def close(self) -> None:
        """Close every target this harness handed out (errors ignored), then clean up."""
        for t in self._targets:
            try:
                t.close()
            except Exception:
                pass
        self._targets.clear()


REGISTRY: dict[str, type[TargetHarness]] = {}


def register(cls: type[TargetHarness]) -> type[TargetHarness]:
    """Class decorator: make a harness known to the contract suite by its ``name``."""
    unknown = set(cls.capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"harness {cls.name}: unknown capabilities {sorted(unknown)}")
    REGISTRY[cls.name] = cls
    return cls


def fixture_name(name: str) -> str:
    """The fixture that yields the harness called ``name``: ``harness_<name>`` with
    ``-`` replaced by ``_`` (``sql-postgres`` -> ``harness_sql_postgres``)."""
    return "harness_" + name.replace("-", "_").replace(".", "_")
