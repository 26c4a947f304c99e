#!/bin/sh
# Samba AD DC for the Active Directory tests (tests/ad, tests/servers/samba.py). The
# tests provision and run their own private DC on a loopback address; the system
# services this package set would start (samba-ad-dc, smbd, nmbd, winbind) are kept
# from starting and disabled, so nothing holds ports 389/636/88/445 or Samba's locks.
set -e
here=$(dirname "$0")
if command -v samba >/dev/null 2>&1 && command -v samba-tool >/dev/null 2>&1 \
   && [ -d /usr/share/samba/setup ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi

# Keep invoke-rc.d from starting the daemons during the install, unless a policy is in
# place already; ours is removed again afterwards.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    OWN_POLICY=1
fi
cleanup() { if [ -n "$OWN_POLICY" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

"$here/../apt-install" samba samba-ad-dc samba-ad-provision krb5-user winbind

# Debian may still have enabled or started them (e.g. when a policy allowed it).
for svc in samba-ad-dc smbd nmbd winbind; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
