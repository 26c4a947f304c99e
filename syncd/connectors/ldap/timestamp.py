"""The ``timestamp`` change method: ``(modifyTimestamp>=watermark)`` with an overlap.

Timestamps have one-second resolution and a change may be committed with a timestamp a
little older than the newest one already seen (same second, replication delay). So each
incremental read asks from ``watermark - overlap`` and skips entries already delivered
with the same modifyTimestamp (``seen``: id -> timestamp of the entries inside the
overlap window, kept in the cursor). Deletes are invisible to this method: a periodic
full scan finds them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncd.contracts import Change

SEEN_LIMIT = 2000
"""At most this many ids are remembered for de-duplication (about 150 kB of cursor)."""
_GT = re.compile(r"^(\d{14})(?:[.,]\d+)?(Z|[+-]\d{4})?$")


def parse_generalized_time(value: str | bytes) -> datetime | None:
    """GeneralizedTime (``20261128001736Z``, AD's ``20261128001736.0Z``) -> aware UTC
    datetime, seconds precision; None if it cannot be parsed."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _GT.match(value.strip())
    if not match:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    zone = match.group(2)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return moment


def format_generalized_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def content_digest(change: Change) -> str:
    """A short digest of an entry's DN and attributes (values in server order)."""
    text = repr((change.dn, sorted(change.attributes.items())))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def since_filter(user_filter: str, since: datetime) -> str:
    """``(&FILTER(modifyTimestamp>=SINCE))``."""
    return f"(&{user_filter}(modifyTimestamp>={format_generalized_time(since)}))"


@dataclass
class Watermark:
    """Tracks the newest modifyTimestamp seen and the ids inside the overlap window."""

    overlap: timedelta
    newest: datetime | None = None
    old_seen: dict[str, str] = field(default_factory=dict)
    window: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    undated: int = 0

    def filter(
        self, changes: Iterator[Change], attribute: str = "modifytimestamp"
    ) -> Iterator[Change]:
        """Pass changes through, dropping ones delivered before with the same timestamp,
        and remember the newest timestamp. ``attribute`` is read before it is dropped by
        the caller, so the caller passes entries that still have it."""
        for change in changes:
            values = change.attributes.get(attribute)
            stamp = values[0] if values else None
            moment = parse_generalized_time(stamp) if stamp is not None else None
            if moment is None:
                self.undated += 1
                yield change
                continue
            # One-second timestamps: two changes in the same second look alike, so the
            # content digest decides whether this is what was delivered before.
            key = f"{format_generalized_time(moment)}:{content_digest(change)}"
            if self.old_seen.get(change.source_id) == key:
                self.skipped += 1
                self.window[change.source_id] = key
                continue
            if self.newest is None or moment > self.newest:
                self.newest = moment
                if len(self.window) > 20000:
                    self._prune()
            if moment >= (self.newest - self.overlap):
                self.window[change.source_id] = key
            yield change

    def _prune(self) -> None:
        assert self.newest is not None
        limit = format_generalized_time(self.newest - self.overlap)
        self.window = {k: v for k, v in self.window.items() if v >= limit}

    def seen(self, limit: int | None = None) -> dict[str, str]:
        """The ids (and "timestamp:digest") inside the final overlap window, for the
        cursor. Empty when more than ``limit`` (e.g. a bulk load within one second):
        the cursor stays small and those entries are merely delivered again."""
        limit = SEEN_LIMIT if limit is None else limit
        if self.newest is not None:
            self._prune()
        return dict(self.window) if len(self.window) <= limit else {}
