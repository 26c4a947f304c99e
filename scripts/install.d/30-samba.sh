#!/bin/sh
# Samba AD DC for the Active Directory tests (tests/ad, tests/servers/samba.py).
# The tests provision and run their own private DC on a loopback address; the system
# services this package set would start (samba-ad-dc, smbd, nmbd, winbind) are stopped
# and disabled so nothing holds ports 389/636/88/445 or the Samba lock files.
set -e
if command -v samba >/dev/null 2>&1 && command -v samba-tool >/dev/null 2>&1 \
   && [ -d /usr/share/samba/setup ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
PKGS="samba samba-ad-dc samba-ad-provision krb5-user winbind"

# Keep invoke-rc.d from starting the daemons during the install (only if no policy
# is in place already; ours is removed again afterwards).
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() { [ -n "$OWN_POLICY" ] && rm -f "$POLICY"; return 0; }
trap cleanup EXIT

if ! apt-get install -y -q --no-install-recommends $PKGS >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $PKGS >/dev/null
fi

# Debian may still have started or enabled them (e.g. under systemd).
for svc in samba-ad-dc smbd nmbd winbind; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
exit 0
