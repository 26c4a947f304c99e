"""What one run's read has decided so far, in bounded memory.

Two facts per entry are needed until the read ends:

* the source ids the read listed ("seen"): an id listed twice keeps its first listing,
  and after a complete read every synced object *not* seen is gone;
* the record keys that new or re-keyed entries claimed, with the claimant's source id
  and DN: two entries must never map onto one target item.

A directory of a million entries made these a set and a dict of a million strings and
tuples (about 400 bytes per entry, 480 MB at 1M). :class:`RunIndex` keeps them in
memory up to ``memory_limit`` entries (small runs pay nothing) and past that moves
them into a private SQLite file in the temporary directory, where each batch of
entries costs a few indexed queries. The file is unlinked as soon as it is open, so a
killed run leaves nothing behind.

Batch protocol (the engine's ``_plan_batch``): :meth:`prefetch` the batch's ids, then
per entry :meth:`is_seen` / :meth:`add_seen`; :meth:`prefetch_claims` the keys, then
per record :meth:`owner` / :meth:`claim`; then :meth:`flush`. Outside a batch every
method answers correctly too (a direct query in SQLite mode).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence

MEMORY_LIMIT = int(os.environ.get("SYNCD_RUN_INDEX_MEMORY", "150000"))
"""Ids plus keys kept in memory before the index moves to disk (env for tests and
tuning). 150,000 keeps a no-change read of 100,000 entries (ids only) in memory, 0.1 s
faster than on disk, at about 5 MB more; a first sync of 100,000 (ids and keys) moves
to disk at 75,000 entries and peaks at 104 MB (bench/bench_inventory.py)."""

Owner = tuple[str, "str | None"]
"""(source id, DN) of the entry that claimed a record key."""

_CHUNK = 500  # ids per IN (...) query: far below SQLite's 32766 variables


class RunIndex:
    """Seen source ids and claimed record keys of one run (see the module docstring).
    Not thread-safe; one per run."""

    def __init__(self, memory_limit: int | None = None):
        self._limit = MEMORY_LIMIT if memory_limit is None else memory_limit
        self._seen: set[str] = set()
        self._claims: dict[str, Owner] = {}
        self._db: sqlite3.Connection | None = None
        # SQLite mode, current batch: answers fetched for it and writes not flushed yet.
        self._seen_asked: set[str] = set()  # prefetched ids ...
        self._seen_known: set[str] = set()  # ... and those of them already seen
        self._seen_pending: set[str] = set()
        self._claims_asked: set[str] = set()
        self._claims_known: dict[str, Owner] = {}
        self._claims_pending: dict[str, Owner] = {}
        if self._limit <= 0:
            self._spill()

    @property
    def on_disk(self) -> bool:
        """True once the index has moved to its SQLite file."""
        return self._db is not None

    # -- seen source ids -------------------------------------------------------------

    def prefetch(self, source_ids: Sequence[str]) -> None:
        """Look up, in one go, which of a batch's ids were already seen."""
        if self._db is None:
            return
        self._seen_asked = set(source_ids)
        self._seen_known = set(self._select("SELECT sid FROM seen WHERE sid IN", source_ids))

    def is_seen(self, source_id: str) -> bool:
        """True when this run's read already listed ``source_id``."""
        if self._db is None:
            return source_id in self._seen
        if source_id in self._seen_pending or source_id in self._seen_known:
            return True
        if source_id in self._seen_asked:
            return False
        return bool(self._select("SELECT sid FROM seen WHERE sid IN", [source_id]))

    def add_seen(self, source_id: str) -> None:
        """Record that the read listed ``source_id`` (its fate is decided)."""
        if self._db is None:
            self._seen.add(source_id)
        else:
            self._seen_pending.add(source_id)

    def unseen(self, source_ids: Iterable[str]) -> list[str]:
        """Those of ``source_ids`` the read did not list, in their order."""
        if self._db is None:
            return [sid for sid in source_ids if sid not in self._seen]
        self.flush()
        out: list[str] = []
        chunk: list[str] = []
        for sid in source_ids:
            chunk.append(sid)
            if len(chunk) >= _CHUNK:
                out.extend(self._unseen_chunk(chunk))
                chunk = []
        if chunk:
            out.extend(self._unseen_chunk(chunk))
        return out

    def _unseen_chunk(self, chunk: list[str]) -> list[str]:
        found = set(self._select("SELECT sid FROM seen WHERE sid IN", chunk))
        return [sid for sid in chunk if sid not in found]

    # -- claimed record keys ---------------------------------------------------------

    def prefetch_claims(self, keys: Sequence[str]) -> None:
        """Look up, in one go, which of a batch's keys were already claimed."""
        if self._db is None:
            return
        self._claims_asked = set(keys)
        self._claims_known = self._select_claims(keys)

    def owner(self, key: str) -> Owner | None:
        """(source id, DN) of the entry of this read that claimed ``key``, or None."""
        if self._db is None:
            return self._claims.get(key)
        found = self._claims_pending.get(key) or self._claims_known.get(key)
        if found is None and key not in self._claims_asked:
            found = self._select_claims([key]).get(key)
        return found

    def claim(self, key: str, source_id: str, dn: str | None) -> None:
        """Record that ``source_id`` (at ``dn``) maps onto record key ``key``."""
        if self._db is None:
            self._claims[key] = (source_id, dn)
        else:
            self._claims_pending[key] = (source_id, dn)
            self._claims_known.pop(key, None)

    def claimed_keys(self) -> Iterator[str]:
        """Every key claimed in this run (streamed)."""
        if self._db is None:
            yield from list(self._claims)
            return
        self.flush()
        yield from (k for (k,) in self._db.execute("SELECT key FROM claims"))

    # -- batches -------------------------------------------------------------------

    def flush(self) -> None:
        """End of a batch: write what it added (SQLite mode), or move to disk when the
        in-memory sets outgrew the limit."""
        if self._db is None:
            if len(self._seen) + len(self._claims) > self._limit:
                self._spill()
            return
        if self._seen_pending:
            self._db.executemany(
                "INSERT OR IGNORE INTO seen (sid) VALUES (?)", ((s,) for s in self._seen_pending)
            )
        if self._claims_pending:
            self._db.executemany(
                "INSERT OR REPLACE INTO claims (key, sid, dn) VALUES (?, ?, ?)",
                ((k, s, d) for k, (s, d) in self._claims_pending.items()),
            )
        self._seen_pending, self._seen_asked, self._seen_known = set(), set(), set()
        self._claims_pending, self._claims_asked, self._claims_known = {}, set(), {}

    def close(self) -> None:
        """Free the memory and the file (already unlinked) of the index."""
        self._seen = set()
        self._claims = {}
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        """Seen source ids (for reports and tests)."""
        if self._db is None:
            return len(self._seen)
        self.flush()
        return self._db.execute("SELECT count(*) FROM seen").fetchone()[0]

    # -- SQLite ----------------------------------------------------------------------

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix="syncd-run-", suffix=".db")
        os.close(fd)
        try:
            db = sqlite3.connect(path, isolation_level=None)
        finally:
            # Unlinked at once: with no journal SQLite never reopens the file, and a
            # killed run leaves nothing in the temporary directory.
            os.unlink(path)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-8192")  # KiB: the index stays on disk, not in RAM
        db.execute("CREATE TABLE seen (sid TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, sid TEXT NOT NULL, dn TEXT)")
        db.execute("BEGIN")  # one long transaction: nothing here must survive the run
        db.executemany("INSERT INTO seen (sid) VALUES (?)", ((s,) for s in self._seen))
        db.executemany(
            "INSERT INTO claims (key, sid, dn) VALUES (?, ?, ?)",
            ((k, s, d) for k, (s, d) in self._claims.items()),
        )
        self._db = db
        self._seen = set()
        self._claims = {}

    def _select(self, sql: str, values: Sequence[str]) -> list[str]:
        assert self._db is not None
        out: list[str] = []
        for start in range(0, len(values), _CHUNK):
            chunk = list(values[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            out.extend(v for (v,) in self._db.execute(f"{sql} ({marks})", chunk))
        return out

    def _select_claims(self, keys: Sequence[str]) -> dict[str, Owner]:
        assert self._db is not None
        found: dict[str, Owner] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, sid, dn FROM claims WHERE key IN ({marks})"
            for key, sid, dn in self._db.execute(sql, chunk):
                found[key] = (sid, dn)
        return found
