"""The run report: who joined, moved, left, came back, what was ambiguous or failed.

The engine creates one :class:`RunReporter` per applying run, feeds it every action
result and every quarantined/ambiguous entry as they happen, and calls
:meth:`RunReporter.finish` at the end. Three files land in the report directory:

* ``<job>-<UTC time>-run<id>.txt``: the human-readable report (counts per category and
  the first ``max_details`` entries of each),
* ``<job>-<UTC time>-run<id>.json``: the same for machines (``syncd status`` reads it),
* ``<job>-<UTC time>-run<id>.jsonl``: every entry, one JSON object per line.

Memory stays flat: only counts and the first entries per category are kept; the full
list is streamed to the JSON-lines file. Values of records are not written (they are
personal data); keys, DNs, what was done and why are.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from syncd.contracts import ActionKind, ActionResult

log = logging.getLogger(__name__)

CATEGORIES: dict[str, str] = {
    "joiners": "Joiners (accounts created)",
    "movers": "Movers (moved or renamed)",
    "leavers": "Leavers (disabled, moved away or deleted)",
    "re_enabled": "Returners (re-enabled)",
    "linked": "Linked to existing entries (correlated)",
    "updated": "Updated",
    "up_to_date": "Already up to date (checked, nothing written)",
    "ambiguous": "Ambiguous (left alone)",
    "quarantined": "Quarantined (not applied)",
    "errors": "Errors (retried on the next run)",
    "warnings": "Warnings (done, with something to look at)",
}
"""Report categories in the order they are printed. Every action and problem counts in
exactly one of them, except ``warnings``: an action whose target noted a ``warning:``
(a managed group that does not exist...) counts in its own category (a joiner) *and*
as a warning."""


def _parts(detail: str | None) -> list[str]:
    return [p.strip() for p in (detail or "").split(";") if p.strip()]


def categorize(result: ActionResult) -> str:
    """The report category of one action result.

    Targets describe what they did in ``ActionResult.detail`` as ``;``-separated parts
    ("created DN", "moved from X to Y", "disabled", "re-enabled", "linked ..."); the
    category follows from the action kind and those parts."""
    if not result.ok:
        return "errors"
    kind = result.action.kind
    if kind is ActionKind.DELETE:
        return "leavers"
    parts = _parts(result.detail)
    if "re-enabled" in parts:
        return "re_enabled"
    if kind is ActionKind.CREATE and not any(p.startswith("linked") for p in parts):
        return "joiners"
    if any(p == "disabled" or p.startswith("disabled ") for p in parts):
        return "leavers"  # e.g. an end date that passed
    if any(p.startswith("linked") for p in parts):
        return "linked"  # first link of an existing entry (it may also have moved)
    if any(p.startswith("moved from") for p in parts):
        return "movers"
    if "already up to date" in parts:
        return "up_to_date"
    return "updated"


class RunReporter:
    """Collects one run's outcomes and writes the report files (see module doc)."""

    def __init__(
        self,
        directory: Path | str,
        job: str,
        run_id: int | None,
        dry_run: bool,
        *,
        max_details: int = 50,
    ):
        self.directory = Path(directory)
        self.job = job
        self.run_id = run_id
        self.dry_run = dry_run
        self.max_details = max_details
        self.started = datetime.now(UTC)
        stamp = self.started.strftime("%Y%m%dT%H%M%SZ")
        safe_job = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)
        run = f"run{run_id}" if run_id is not None else "dry-run"
        self.stem = f"{safe_job}-{stamp}-{run}"
        self.counts: Counter[str] = Counter()
        self.first: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
        self._jsonl: IO[str] | None = None

    # -- feeding ------------------------------------------------------------------------

    def _record(self, category: str, item: dict[str, Any]) -> None:
        self.counts[category] += 1
        item = {"category": category, **item}
        if len(self.first[category]) < self.max_details:
            self.first[category].append(item)
        try:
            if self._jsonl is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._jsonl = open(  # noqa: SIM115 - kept open for the whole run
                    self.directory / f"{self.stem}.jsonl", "w", encoding="utf-8"
                )
            self._jsonl.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
        except OSError as err:
            # A full disk must not fail the run; the summary still has the counts.
            if self._jsonl is not None:
                self._jsonl.close()
            self._jsonl = None
            log.warning("run report: cannot write details: %s", err)

    def action(self, result: ActionResult) -> None:
        """One applied action (or, in a dry run, a planned one with ok=True)."""
        a = result.action
        item = {
            "kind": a.kind.value,
            "source_id": a.source_id,
            "key": a.key,
            "dn": a.dn,
            "target_id": result.target_id or a.target_id,
            "detail": result.detail,
            "error": result.error,
        }
        self._record(categorize(result), item)
        warnings = [p for p in _parts(result.detail) if p.startswith("warning:")]
        if result.ok and warnings:
            self._record("warnings", {**item, "detail": "; ".join(warnings)})

    def problem(self, source_id: str, dn: str | None, reason: str) -> None:
        """An entry that was left alone: ambiguous correlation or quarantined."""
        category = "ambiguous" if reason.startswith("ambiguous") else "quarantined"
        self._record(category, {"source_id": source_id, "dn": dn, "reason": reason})

    # -- writing ------------------------------------------------------------------------

    def finish(self, report: Any) -> Path:
        """Write the text and JSON reports; return the text report's path.

        ``report`` is the engine's RunReport (job, run_id, status, method, started,
        duration, counts, error, notes). Raises OSError if the directory is unusable."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        self.directory.mkdir(parents=True, exist_ok=True)
        details = self.directory / f"{self.stem}.jsonl"
        summary = {
            "job": self.job,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "status": getattr(report, "status", None),
            "method": getattr(report, "method", None),
            "started": _iso(getattr(report, "started", None) or self.started),
            "duration": round(float(getattr(report, "duration", 0.0) or 0.0), 3),
            "counts": dict(getattr(report, "counts", {}) or {}),
            "error": getattr(report, "error", None),
            "notes": list(getattr(report, "notes", []) or []),
            "categories": {
                c: {"count": self.counts[c], "first": self.first[c]} for c in CATEGORIES
            },
            "details_file": details.name if details.exists() else None,
        }
        json_path = self.directory / f"{self.stem}.json"
        _write_atomic(json_path, json.dumps(summary, ensure_ascii=False, indent=1, default=str))
        text_path = self.directory / f"{self.stem}.txt"
        _write_atomic(text_path, render_text(summary, self.max_details))
        return text_path


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _line(item: dict[str, Any]) -> str:
    who = item.get("key") or item.get("source_id") or "?"
    what = item.get("error") or item.get("reason") or item.get("detail") or item.get("kind") or ""
    where = f" ({item['dn']})" if item.get("dn") else ""
    return f"  {who}{where}: {what}"


def render_text(summary: dict[str, Any], max_details: int = 50) -> str:
    """The human-readable report from a summary dict (as written to the JSON file)."""
    head = f"syncd run report: job {summary['job']}"
    if summary.get("run_id") is not None:
        head += f", run {summary['run_id']}"
    if summary.get("dry_run"):
        head += " (DRY RUN: nothing was written)"
    out = [head, "=" * len(head)]
    out.append(
        f"started {summary.get('started')}, {summary.get('duration', 0):.1f} s, "
        f"status {summary.get('status')}, changes found by {summary.get('method') or '?'}"
    )
    if summary.get("error"):
        out.append(f"error: {summary['error']}")
    counts = summary.get("counts") or {}
    if counts:
        out.append("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    cats = summary["categories"]
    out.append("")
    out.append(
        "summary: " + ", ".join(f"{cats[c]['count']} {c.replace('_', '-')}" for c in CATEGORIES)
    )
    for c, title in CATEGORIES.items():
        n = cats[c]["count"]
        if not n:
            continue
        out.append("")
        out.append(f"{title}: {n}")
        out.extend(_line(i) for i in cats[c]["first"])
        if n > len(cats[c]["first"]):
            more = n - len(cats[c]["first"])
            out.append(f"  ... and {more} more in {summary.get('details_file') or 'the log'}")
    if summary.get("notes"):
        out.append("")
        out.append("Notes:")
        out.extend(f"  - {n}" for n in summary["notes"])
    return "\n".join(out) + "\n"


def latest_report(directory: Path | str, job: str) -> Path | None:
    """The newest JSON report of ``job`` in ``directory`` (for ``syncd status``)."""
    directory = Path(directory)
    safe_job = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)
    # Exactly this job's names: job "hr" must not pick up "hr-2024-<stamp>-run1.json"
    # of a job called "hr-2024".
    pattern = re.compile(re.escape(safe_job) + r"-(\d{8}T\d{6}Z)-run(\d+)\.json")
    found = []
    for path in directory.glob(f"{glob.escape(safe_job)}-*-run*.json"):
        match = pattern.fullmatch(path.name)
        if match:
            found.append((match.group(1), int(match.group(2)), path))
    # Newest by UTC stamp, then by run id (two runs within one second).
    return max(found)[2] if found else None


def summary_line(json_path: Path | str) -> str:
    """One line for ``syncd status``: the categories of a JSON report and its text file."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    cats = data.get("categories", {})
    parts = [f"{cats[c]['count']} {c.replace('_', '-')}" for c in CATEGORIES if c in cats]
    text = Path(json_path).with_suffix(".txt")
    return f"{data.get('status')}: " + ", ".join(parts) + f" ({text})"
