"""LDAP connector: OpenLDAP / 389-ds / Active Directory source (and LDAP target).

``CONNECTOR`` is defined once the source module lands; ``connection`` is usable now.
"""
