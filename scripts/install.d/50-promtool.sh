#!/bin/sh
# promtool (Debian package prometheus) for tests/daemon/test_alert_rules.py: it checks
# contrib/prometheus/syncd-alerts.yaml and runs its unit tests (`promtool test rules`).
# The package's prometheus.service is not started (no systemd as PID 1 in CI).
set -e
here=$(dirname "$0")
if ! command -v promtool >/dev/null 2>&1; then
    "$here/../apt-install" prometheus
fi
