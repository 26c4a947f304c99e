#!/bin/sh
# PostgreSQL server binaries (initdb, pg_ctl) for the state-store and SQL tests, which
# start their own private clusters. Debian 12 ships postgresql-15.
set -e
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q postgresql >/dev/null
# Debian starts a system cluster on install; the tests run their own private ones.
(systemctl stop postgresql 2>/dev/null || service postgresql stop 2>/dev/null) >/dev/null 2>&1 || true
