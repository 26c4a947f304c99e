#!/bin/sh
# OpenLDAP server and client tools for the tests and the demo (Debian packages).
set -e
command -v slapd >/dev/null 2>&1 && command -v ldapsearch >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q slapd ldap-utils >/dev/null
# Debian starts a system slapd on install; the tests run their own private ones.
(systemctl stop slapd 2>/dev/null || service slapd stop 2>/dev/null || pkill -x slapd) >/dev/null 2>&1 || true
