"""CardDAV connector: a target writing people and groups as vCards into an address book
(Nextcloud, SOGo, Radicale, iCloud, Fastmail...), on httpx + lxml + vobject.

Config: :class:`~syncd.connectors.carddav.config.CardDavConnection` (``type: carddav``) and
:class:`~syncd.connectors.carddav.config.CardDavTargetOptions`. Record fields:
:mod:`syncd.connectors.carddav.vcard`. Behaviour: :mod:`syncd.connectors.carddav.target`.
"""

from syncd.connectors.carddav.config import CardDavConnection, CardDavTargetOptions
from syncd.connectors.carddav.target import CardDavTarget
from syncd.contracts import ConnectorSpec

CONNECTOR = ConnectorSpec(
    name="carddav",
    connection_model=CardDavConnection,
    target_class=CardDavTarget,
    target_model=CardDavTargetOptions,
    description="CardDAV address book (vCard 3.0/4.0): people and groups as contacts",
)

__all__ = ["CONNECTOR", "CardDavConnection", "CardDavTarget", "CardDavTargetOptions"]
