"""Exchange connector: contacts and distribution lists through EWS (exchangelib).

Modules: ``models`` (config: ExchangeConnection, ExchangeTargetOptions), ``fields``
(record field names -> contact/DL properties), ``client`` (exchangelib account, TLS,
back-off, error translation), ``target`` (ExchangeTarget).

Exchange Server on premises (2013/2016/2019/SE) with NTLM or Basic is the supported
path. EWS in Exchange Online is blocked for new apps since 2026-10 and retired in
2027-04; OAuth client credentials are accepted as configuration only.
"""

from __future__ import annotations

from syncd.connectors.exchange.models import ExchangeConnection, ExchangeTargetOptions
from syncd.connectors.exchange.target import ExchangeTarget
from syncd.contracts import ConnectorSpec

CONNECTOR = ConnectorSpec(
    name="exchange",
    connection_model=ExchangeConnection,
    target_class=ExchangeTarget,
    target_model=ExchangeTargetOptions,
    description="Exchange contacts and distribution lists via EWS (on premises)",
)

__all__ = ["CONNECTOR", "ExchangeConnection", "ExchangeTarget", "ExchangeTargetOptions"]
