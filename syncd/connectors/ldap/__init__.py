"""LDAP connector: OpenLDAP / 389-ds / Active Directory source, and the LDAP target.

Modules: ``connection`` (config model, verified TLS connect), ``wire`` (streaming
searches), ``values`` (value convention), ``rootdse``, ``syncrepl``, ``timestamp``,
``source`` (LdapSource); ``ad`` (DirSync/uSNChanged) and ``target`` belong to the AD and
LDAP-target work.
"""

from __future__ import annotations

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions
from syncd.contracts import ConnectorSpec

try:
    from syncd.connectors.ldap.target import LdapTarget, LdapTargetOptions
except ModuleNotFoundError as err:  # the target module is not there yet: source only
    if err.name != "syncd.connectors.ldap.target":
        raise
    LdapTarget = LdapTargetOptions = None  # type: ignore[assignment,misc]

CONNECTOR = ConnectorSpec(
    name="ldap",
    connection_model=LdapConnection,
    source_class=LdapSource,
    source_model=LdapSourceOptions,
    target_class=LdapTarget,
    target_model=LdapTargetOptions,
    description="LDAP directory (OpenLDAP, 389-ds, Active Directory)",
)

__all__ = ["CONNECTOR", "LdapConnection", "LdapSource", "LdapSourceOptions"]
