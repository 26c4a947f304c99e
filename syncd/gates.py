"""Safety gates: checks on the whole plan before anything is written.

A target is never wiped by accident: a run that would delete (or disable) more than the
job allows, or whose complete read found nothing where objects were synced before,
stops here with a clear message. ``--allow-deletes`` lets one run through.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.errors import GateStopped


@dataclass(frozen=True, slots=True)
class PlanTotals:
    synced_before: int
    """Objects the state held for this job before the run."""
    read: int
    """Changes the source delivered (upserts + presents + deletes)."""
    complete: bool
    deletes: int
    """Deletes plus disables (updates that set ``enabled`` to false)."""


def allowed_deletes(max_deletes: int | float, synced_before: int) -> int:
    """How many deletes ``max_deletes`` (a count, or a share given as a float < 1 from a
    percentage) permits against ``synced_before`` objects."""
    if isinstance(max_deletes, float):
        return int(max_deletes * synced_before)
    return max_deletes


def check(totals: PlanTotals, max_deletes: int | float, *, allow_deletes: bool) -> list[str]:
    """Raise GateStopped if the plan must not be applied; return warnings otherwise.

    The messages say what was found, what the limit is and how to override.
    """
    warnings: list[str] = []
    if totals.complete and totals.read == 0 and totals.synced_before > 0:
        msg = (
            f"the source returned no objects, but {totals.synced_before} were synced before: "
            "refusing to treat that as 'everything was deleted' (wrong base or filter, ACL "
            "change, empty export?)"
        )
        if not allow_deletes:
            raise GateStopped(msg + "; if it is really meant, run once with --allow-deletes")
        warnings.append(msg + "; going ahead because of --allow-deletes")
    limit = allowed_deletes(max_deletes, totals.synced_before)
    if totals.deletes > limit:
        shown = (
            f"{max_deletes * 100:g}% of {totals.synced_before} = {limit}"
            if isinstance(max_deletes, float)
            else str(limit)
        )
        msg = (
            f"the plan deletes or disables {totals.deletes} objects, more than max_deletes "
            f"allows ({shown})"
        )
        if not allow_deletes:
            raise GateStopped(
                msg + "; nothing was written. Check the source, then run once with "
                "--allow-deletes, or raise max_deletes"
            )
        warnings.append(msg + "; going ahead because of --allow-deletes")
    return warnings
