"""CSV source: an HR export (or any table) dropped as a file on the host.

The file is opened once and read twice (a new export renamed over it in between does
not matter), both times streamed through the :mod:`csv` module: the first
pass validates the whole file (header, column counts, encoding, duplicate ids, row
count against the last good run) before a single change is emitted; the second pass
emits the changes. So a truncated, empty or half-written file fails the read before the
engine sees anything, and memory holds only the ids (for duplicate detection), never the
rows.

The cursor is JSON ``{"rows": N, "sha256": "...", "file": "name", "size": N}``; the
engine stores it only after a successful run, so ``max_drop`` always compares against
the last *good* file.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field, field_validator

from syncd.contracts import Change, CheckResult, Op, Read, ReadOutcome, Source
from syncd.errors import SourceError
from syncd.paths import ConfigPath

log = logging.getLogger(__name__)

# Python's csv module refuses fields above 128 KiB by default; HR exports with long
# free-text fields exceed that rarely, but a 1 MiB cap still catches a runaway quote.
csv.field_size_limit(1 << 20)

_MAX_NOTED_DUPLICATES = 20

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""An id with a control character (NUL...) is not an id a person typed: such a row is
treated like one without an id (PostgreSQL cannot even store it)."""


def _line_breaks(encoding: str) -> tuple[bytes, ...]:
    """The bytes of a line break in ``encoding`` (a UTF-16 export ends with
    b"\\n\\x00", not b"\\n"), without a byte order mark, in either byte order."""
    name = codecs.lookup(encoding).name
    variants = [name]
    if name in ("utf-16", "utf-32"):
        variants += [f"{name}-le", f"{name}-be"]
    out: set[bytes] = set()
    for variant in variants:
        for ch in "\n\r":
            one, two = ch.encode(variant), (ch + ch).encode(variant)
            out.add(two[len(one) :])  # the second one: no BOM in front
    return tuple(out)


class _Lines:
    """The lines of a text file for csv.reader, counting them (physical line numbers
    for messages; a ``sep=`` line pushed back is not counted twice)."""

    def __init__(self, handle: Iterator[str]):
        self._it = iter(handle)
        self.count = 0
        self._pushed: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._pushed.pop() if self._pushed else next(self._it)
        self.count += 1
        return line

    def push_back(self, line: str) -> None:
        self.count -= 1
        self._pushed.append(line)


class CsvConnection(BaseModel):
    """Where the CSV file is and how it is written (``connections.NAME``, ``type: csv``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: ConfigPath = Field(
        description="the CSV file, or a directory whose newest file matching `glob` is "
        "read (a nightly drop folder); relative to the config file. Example: /srv/hr/export.csv"
    )
    glob: str = Field("*.csv", description="file name pattern when `path` is a directory")
    encoding: str = Field(
        "utf-8-sig",
        description="text encoding; the default reads UTF-8 with or without a byte order "
        "mark. Example: cp1252",
    )
    delimiter: str = Field(
        ",", min_length=1, max_length=1, description='field separator: "," ";" "\\t"'
    )
    quotechar: str = Field('"', min_length=1, max_length=1, description="quote character")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="CSV header -> attribute name, e.g. {Personalnummer: employee_id}; "
        "columns not listed keep their header (lower-cased) as attribute name",
    )
    min_age: float = Field(
        2.0,
        ge=0,
        description="seconds the file must be unchanged before it is read (a file still "
        "being written is a failed read)",
    )
    require_final_newline: bool = Field(
        True,
        description="a file whose last line does not end with a line break is taken as "
        "truncated (failed read); set false for exports that omit it",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    def describe(self) -> str:
        return str(self.path if self.path.suffix else self.path / self.glob)


class CsvSourceOptions(BaseModel):
    """A job's ``source:`` block for a CSV connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: str = Field(
        description="column (header or mapped attribute name) holding the stable id, e.g. "
        "the employee number; it becomes the source id"
    )
    required_columns: list[str] = Field(
        default_factory=list, description="columns that must be in the header"
    )
    min_rows: int = Field(1, ge=0, description="fewer data rows is a failed read")
    max_drop: int | str | None = Field(
        "20%",
        description="a row count that dropped by more than this (count or percentage) "
        "since the last good run is a failed read; null = no check. "
        "`syncd sync JOB --full` skips the check once.",
    )
    split: dict[str, str] = Field(
        default_factory=dict,
        description="multi-valued columns: attribute -> separator, e.g. {groups: ';'}",
    )
    strip: bool = Field(True, description="strip spaces around values")
    skip_rows_without_id: bool = Field(
        False,
        description="rows with an empty id are skipped (noted) instead of failing the read",
    )

    @field_validator("max_drop")
    @classmethod
    def _check_drop(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and not re.fullmatch(r"\d+(\.\d+)?%", value.strip()):
            raise ValueError('max_drop must be a count or a percentage like "20%"')
        if isinstance(value, int) and value < 0:
            raise ValueError("max_drop must not be negative")
        return value


@dataclass
class _Scan:
    """What the validating first pass learned about the file."""

    path: Path
    raw: BinaryIO
    """The file, open: both passes read this one file even if the export at ``path``
    is replaced in between (the HR system dropping the next one)."""
    stat: os.stat_result
    sha256: str
    header: list[str]
    attrs: list[str]
    id_index: int
    rows: int = 0
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    without_id: list[int] = field(default_factory=list)


class CsvSource(Source):
    """Reads an HR export; every good read is complete (ids not in the file are gone)."""

    incremental = False

    connection: CsvConnection
    options: CsvSourceOptions

    def describe(self) -> str:
        return f"csv {self.connection.describe()}"

    # -- file selection -------------------------------------------------------------

    def _pick_file(self) -> Path:
        path = self.connection.path
        if path.is_dir():
            candidates = [p for p in path.glob(self.connection.glob) if p.is_file()]
            if not candidates:
                raise SourceError(f"csv: no file matching {self.connection.glob} in {path}")
            # Newest drop wins; name breaks ties so the choice is deterministic.
            return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))
        if not path.exists():
            raise SourceError(f"csv: file {path} does not exist")
        if not path.is_file():
            raise SourceError(f"csv: {path} is not a regular file")
        return path

    # -- reading ----------------------------------------------------------------------

    def read(self, cursor: str | None, *, full: bool = False) -> Read:
        """Validate the whole file, then return a read that streams its rows.

        Raises SourceError (before any change is emitted) for a missing, empty,
        truncated, undecodable or still-changing file, a missing required column, too
        few rows or a row-count drop above ``max_drop``.
        """
        path = self._pick_file()
        scan = self._scan(path)
        try:
            return self._start(scan, cursor, full)
        except BaseException:
            scan.raw.close()
            raise

    def _start(self, scan: _Scan, cursor: str | None, full: bool) -> Read:
        path = scan.path
        notes: list[str] = [f"read {path.name}: {scan.rows} rows"]
        if _previous(cursor, "sha256") == scan.sha256:
            # Not an error (a quiet day), but a stale export is worth a look.
            notes.append(f"{path.name} is byte for byte the file of the last good run")
        self._check_counts(scan, cursor, full, notes)
        if scan.duplicates:
            shown = list(scan.duplicates.items())[:_MAX_NOTED_DUPLICATES]
            text = ", ".join(f"{i} (lines {', '.join(map(str, ls))})" for i, ls in shown)
            more = len(scan.duplicates) - len(shown)
            notes.append(
                f"duplicate {self.options.id_column}: {len(scan.duplicates)} id(s) left alone: "
                + text
                + (f" and {more} more" if more > 0 else "")
            )
            log.warning("%s: %s", path.name, notes[-1])
        if scan.without_id:
            notes.append(
                f"{len(scan.without_id)} row(s) without {self.options.id_column} skipped "
                f"(lines {', '.join(map(str, scan.without_id[:20]))})"
            )
            log.warning("%s: %s", path.name, notes[-1])
        result = Read(iter(()))
        result.changes = self._emit(scan, result, notes)
        return result

    def _open(self, path: Path):
        return open(path, encoding=self.connection.encoding, newline="")

    @contextmanager
    def _text(self, raw: BinaryIO) -> Iterator[io.TextIOWrapper]:
        """The open file ``raw`` from its start as text (left open afterwards)."""
        raw.seek(0)
        handle = io.TextIOWrapper(raw, encoding=self.connection.encoding, newline="")
        try:
            yield handle
        finally:
            handle.detach()

    def _reader(self, lines: _Lines) -> Iterator[list[str]]:
        """Rows of ``lines``. Excel's optional first line ``sep=;`` names the delimiter
        (and is not the header)."""
        delimiter = self.connection.delimiter
        try:
            first = next(lines)
        except StopIteration:
            first = None
        if first is not None:
            head = first.lstrip("\ufeff").rstrip("\r\n")
            if len(head) == 5 and head.lower().startswith("sep="):
                delimiter = head[4]
            else:
                lines.push_back(first)
        return csv.reader(
            lines,
            delimiter=delimiter,
            quotechar=self.connection.quotechar,
            strict=True,
        )

    @staticmethod
    def _fit(row: list[str], width: int) -> list[str] | None:
        """``row`` cut to the header's named columns: Excel writes trailing empty columns
        (``a,b,,``) that have no header; they may only hold empty values. None when the
        row does not fit (too short, or a value in a column without a name)."""
        if len(row) == width:
            return row
        if len(row) > width and not any(v.strip() for v in row[width:]):
            return row[:width]
        return None

    def _scan(self, path: Path) -> _Scan:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - kept open for the emitting pass
        except OSError as err:
            raise SourceError(f"csv: cannot read {path}: {err.strerror}") from None
        try:
            return self._scan_open(path, raw)
        except BaseException:
            raw.close()
            raise

    def _scan_open(self, path: Path, raw: BinaryIO) -> _Scan:
        st = os.fstat(raw.fileno())
        if st.st_size == 0:
            raise SourceError(f"csv: {path} is empty")
        age = time.time() - st.st_mtime
        if age < -1.0:
            # A modification time in the future (the writer's clock is ahead: an SMB or
            # NFS server): its age says nothing, and would refuse the file for hours.
            # Watch the file for min_age instead.
            log.warning(
                "csv: %s has a modification time %.0fs in the future (clock skew?): "
                "checking that it stays unchanged for %ss",
                path,
                -age,
                self.connection.min_age,
            )
            time.sleep(self.connection.min_age)
            now = os.fstat(raw.fileno())
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise SourceError(
                    f"csv: {path} is still being written (it changed within "
                    f"{self.connection.min_age}s); try again later"
                )
        elif age < self.connection.min_age:
            raise SourceError(
                f"csv: {path} changed {age:.1f}s ago (min_age {self.connection.min_age}s): "
                "it may still be being written; try again later"
            )
        digest = hashlib.sha256()
        last = b""
        try:
            while chunk := raw.read(1 << 20):
                digest.update(chunk)
                last = (last + chunk)[-8:]
        except OSError as err:
            raise SourceError(f"csv: cannot read {path}: {err.strerror}") from None
        if self.connection.require_final_newline and not last.endswith(
            _line_breaks(self.connection.encoding)
        ):
            raise SourceError(
                f"csv: {path} does not end with a line break: truncated or still being "
                "written (set require_final_newline: false if the export never ends with one)"
            )
        line = 0
        try:
            with self._text(raw) as handle:
                lines = _Lines(handle)
                reader = self._reader(lines)
                header = self._header(reader, path)
                attrs = self._attribute_names(header)
                id_index = self._index_of(self.options.id_column, header, attrs, path)
                for name in self.options.required_columns:
                    self._index_of(name, header, attrs, path)
                scan = _Scan(path, raw, st, digest.hexdigest(), header, attrs, id_index)
                first_line: dict[str, int] = {}
                width = len(header)
                line = lines.count
                for row in reader:
                    start, line = line + 1, lines.count
                    if not row:
                        continue  # blank line
                    if self._fit(row, width) is None:
                        raise SourceError(
                            f"csv: {path.name} line {start}: {len(row)} fields where the "
                            f"header has {width}: truncated or malformed file"
                        )
                    scan.rows += 1
                    ident = row[id_index].strip()
                    if not ident or _CONTROL.search(ident):
                        if not self.options.skip_rows_without_id:
                            what = "empty" if not ident else "control character in"
                            raise SourceError(
                                f"csv: {path.name} line {start}: {what} "
                                f"{self.options.id_column} (set skip_rows_without_id: true "
                                "to skip such rows)"
                            )
                        scan.without_id.append(start)
                        continue
                    seen = first_line.setdefault(ident, start)
                    if seen != start:
                        scan.duplicates.setdefault(ident, [seen]).append(start)
        except csv.Error as err:
            raise SourceError(f"csv: {path.name} line {line + 1}: {err}") from None
        except UnicodeDecodeError as err:
            raise SourceError(
                f"csv: {path.name} is not valid {self.connection.encoding} "
                f"(byte {err.start} of a chunk: {err.reason}); set `encoding:`"
            ) from None
        except OSError as err:
            raise SourceError(f"csv: cannot read {path}: {err.strerror}") from None
        self._same_file(path, raw, st)
        return scan

    def _header(self, reader: Iterator[list[str]], path: Path) -> list[str]:
        try:
            header = next(reader)
        except StopIteration:
            raise SourceError(f"csv: {path} is empty") from None
        if header and header[0].startswith("\ufeff"):
            # A BOM read with encoding utf-8 (not utf-8-sig) would glue itself to the
            # first column name.
            header[0] = header[0][1:]
        header = [h.strip() for h in header]
        if not any(header):
            raise SourceError(f"csv: {path.name}: the first line is not a header")
        while header and header[-1] == "":
            header.pop()  # Excel's trailing empty columns (see _fit)
        if "" in header:
            raise SourceError(f"csv: {path.name}: column {header.index('') + 1} has no name")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise SourceError(f"csv: {path.name}: header names repeated: {', '.join(dupes)}")
        return header

    def _attribute_names(self, header: list[str]) -> list[str]:
        by_lower = {k.lower(): v for k, v in self.connection.columns.items()}
        names = []
        for h in header:
            mapped = self.connection.columns.get(h) or by_lower.get(h.lower()) or h
            names.append(mapped.lower())
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            # Two columns feeding one attribute: one would silently win, row by row.
            detail = "; ".join(
                f"{n}: {', '.join(h for h, a in zip(header, names, strict=True) if a == n)}"
                for n in clashes
            )
            raise SourceError(f"csv: several columns give the same attribute ({detail})")
        return names

    @staticmethod
    def _index_of(name: str, header: list[str], attrs: list[str], path: Path) -> int:
        low = name.lower()
        for i, (h, a) in enumerate(zip(header, attrs, strict=True)):
            if h.lower() == low or a == low:
                return i
        raise SourceError(
            f"csv: {path.name}: required column {name!r} is missing (header: {', '.join(header)})"
        )

    def _same_file(self, path: Path, raw: BinaryIO, before: os.stat_result) -> None:
        """SourceError when the open file was written to since ``before`` (rewritten in
        place). A new file renamed over ``path`` does not matter: ``raw`` is the old one."""
        now = os.fstat(raw.fileno())
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceError(f"csv: {path} changed while being read; try again later")

    def _check_counts(self, scan: _Scan, cursor: str | None, full: bool, notes: list[str]) -> None:
        opts = self.options
        if scan.rows < opts.min_rows:
            raise SourceError(
                f"csv: {scan.path.name} has {scan.rows} data rows, fewer than min_rows "
                f"{opts.min_rows}"
            )
        previous = _previous_rows(cursor)
        if previous is None or opts.max_drop is None or scan.rows >= previous:
            return
        drop = previous - scan.rows
        if isinstance(opts.max_drop, str):
            limit = float(opts.max_drop.strip().rstrip("%"))
            too_many = drop * 100.0 / previous > limit
        else:
            limit = opts.max_drop
            too_many = drop > limit
        if not too_many:
            return
        message = (
            f"csv: {scan.path.name} has {scan.rows} rows, {drop} fewer than the "
            f"{previous} of the last good run (max_drop {opts.max_drop})"
        )
        if full:
            notes.append(message + ": accepted because of --full")
            log.warning("%s: accepted because of --full", message)
            return
        raise SourceError(message + "; if this is expected, run once with --full")

    # -- emitting ---------------------------------------------------------------------

    def _emit(self, scan: _Scan, result: Read, notes: list[str]) -> Iterator[Change]:
        opts = self.options
        strip = opts.strip
        split = {k.lower(): v for k, v in opts.split.items()}
        attrs = scan.attrs
        dup_sent: set[str] = set()
        id_index = scan.id_index
        try:
            with self._text(scan.raw) as handle:
                reader = self._reader(_Lines(handle))
                next(reader)
                for row in reader:
                    if not row:
                        continue
                    fitted = self._fit(row, len(attrs))
                    if fitted is None:
                        raise SourceError(f"csv: {scan.path} changed while being read")
                    row = fitted
                    ident = row[id_index].strip()
                    if not ident or _CONTROL.search(ident):
                        continue
                    if ident in scan.duplicates:
                        if ident not in dup_sent:
                            dup_sent.add(ident)
                            # Seen, so not deleted; but neither row is trusted.
                            yield Change(op=Op.PRESENT, source_id=ident)
                        continue
                    values: dict[str, list[str | bytes]] = {}
                    for name, value in zip(attrs, row, strict=True):
                        if strip:
                            value = value.strip()
                        if not value:
                            continue
                        sep = split.get(name)
                        if sep:
                            parts = [p.strip() if strip else p for p in value.split(sep)]
                            values[name] = [p for p in parts if p]
                        else:
                            values[name] = [value]
                    yield Change(op=Op.UPSERT, source_id=ident, attributes=values)
            self._same_file(scan.path, scan.raw, scan.stat)
        except (csv.Error, UnicodeDecodeError, OSError):
            raise SourceError(f"csv: {scan.path} changed while being read") from None
        finally:
            scan.raw.close()
        cursor = json.dumps(
            {
                "rows": scan.rows,
                "sha256": scan.sha256,
                "file": scan.path.name,
                "size": scan.stat.st_size,
            },
            sort_keys=True,
        )
        result.outcome = ReadOutcome(cursor=cursor, complete=True, method="csv", notes=notes)

    # -- doctor -----------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        name = f"csv file {self.connection.describe()}"
        try:
            path = self._pick_file()
            with self._open(path) as handle:
                header = self._header(self._reader(_Lines(handle)), path)
            attrs = self._attribute_names(header)
            self._index_of(self.options.id_column, header, attrs, path)
            for col in self.options.required_columns:
                self._index_of(col, header, attrs, path)
        except SourceError as err:
            return [CheckResult(name, False, str(err), "check the path and the export")]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            return [CheckResult(name, False, f"cannot read: {err}", "check path and encoding")]
        return [CheckResult(name, True, f"{path.name}: {len(header)} columns")]


def _previous(cursor: str | None, name: str) -> object:
    """A value from a cursor this source wrote (None for none or a foreign cursor)."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None


def _previous_rows(cursor: str | None) -> int | None:
    rows = _previous(cursor, "rows")
    return rows if isinstance(rows, int) and rows >= 0 else None
