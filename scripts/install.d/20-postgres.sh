#!/bin/sh
# PostgreSQL server binaries (initdb, pg_ctl) for the state-store and SQL tests, which run
# their own private clusters (tests/servers/postgres.py). Debian 12 ships postgresql-15;
# the `postgresql` package pulls in whatever version the release offers.
set -e
here=$(dirname "$0")
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
    exit 0
fi
"$here/../apt-install" postgresql
# Debian creates and starts a system cluster on install; the tests do not use it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
else
    service postgresql stop >/dev/null 2>&1 || true
fi
