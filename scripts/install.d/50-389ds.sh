#!/bin/sh
# 389 Directory Server for the tests in tests/ldap that run every change method against
# it (tests/servers/ds389.py creates private instances with dscreate, no systemd). The
# package's own service template is never started: nothing listens on 389/636.
set -e
here=$(dirname "$0")
if command -v dscreate >/dev/null 2>&1 && command -v ns-slapd >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
# Keep invoke-rc.d from starting anything during the install (as 30-samba.sh does).
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() { if [ -n "$OWN_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT
"$here/../apt-install" 389-ds-base
