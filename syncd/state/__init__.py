"""The state store: cursors, synced objects, run history and quarantine, per job.

See :mod:`syncd.state.store` (the store) and :mod:`syncd.state.fingerprint` (record
fingerprints compared by the planner).
"""

from syncd.state.fingerprint import fingerprint
from syncd.state.store import (
    KEEP,
    InFlight,
    ObjectState,
    QuarantineEntry,
    RunRecord,
    StateStore,
)

__all__ = [
    "KEEP",
    "InFlight",
    "ObjectState",
    "QuarantineEntry",
    "RunRecord",
    "StateStore",
    "fingerprint",
]
