#!/bin/sh
# OpenLDAP server and client tools: the tests and the demo run private slapd instances.
set -e
here=$(dirname "$0")
if ! command -v slapd >/dev/null 2>&1 || ! command -v ldapsearch >/dev/null 2>&1; then
    "$here/../apt-install" slapd ldap-utils
    # Debian starts a system slapd on install; ours are private, so stop it.
    (systemctl stop slapd || service slapd stop || pkill -x slapd) >/dev/null 2>&1 || true
fi
