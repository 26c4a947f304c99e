#!/bin/sh
# systemd-analyze (verify, security --offline) for the unit-file tests in tests/daemon,
# and /bin/kill (procps), which syncd.service's ExecReload= names and verify checks.
# Neither needs systemd running as PID 1.
set -e
here=$(dirname "$0")
if ! command -v systemd-analyze >/dev/null 2>&1 || [ ! -x /bin/kill ]; then
    "$here/../apt-install" systemd procps
fi
