#!/bin/sh
# groff and man(1) render the man page in tests/unit/test_manpage.py and
# tests/packaging/test_wheel.py (`man -l`); python3-venv makes the fresh virtualenv the
# wheel is installed into.
set -e
here=$(dirname "$0")
if ! command -v groff >/dev/null 2>&1 || ! command -v man >/dev/null 2>&1; then
    "$here/../apt-install" groff-base man-db
fi
