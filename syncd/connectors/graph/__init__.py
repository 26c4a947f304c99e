"""Microsoft Graph connector: contacts in Exchange Online mailboxes (EWS there is blocked
by default since 2026-10 and retired on 2027-04-01; the ``exchange`` connector stays for
Exchange Server on premises).

Modules: ``config`` (GraphConnection, GraphTargetOptions), ``auth`` (MSAL client
credentials), ``client`` (httpx: throttling, paging, ``$batch``, per-mailbox
concurrency), ``fields`` (record fields -> contact properties, digest), ``target``
(GraphTarget).
"""

from __future__ import annotations

from syncd.connectors.graph.config import GraphConnection, GraphTargetOptions
from syncd.connectors.graph.target import GraphTarget
from syncd.contracts import ConnectorSpec

CONNECTOR = ConnectorSpec(
    name="graph",
    connection_model=GraphConnection,
    target_class=GraphTarget,
    target_model=GraphTargetOptions,
    description="Microsoft 365 / Exchange Online contacts via Microsoft Graph (app-only)",
)

__all__ = ["CONNECTOR", "GraphConnection", "GraphTarget", "GraphTargetOptions"]
