"""Shared pytest set-up. Server fixtures live in tests/servers/fixtures_*.py, one module
per kind of server, so each area of the code owns its own fixtures."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.servers.fixtures_slapd",
    "tests.servers.fixtures_postgres",
    "tests.servers.fixtures_samba",
    "tests.servers.fixtures_radicale",
    "tests.servers.fixtures_ews",
    "tests.servers.fixtures_ldaptarget",
    "tests.servers.fixtures_ds389",
    "tests.servers.fixtures_graph",
]
