"""Run the syncd CLI with the daemon commands registered (for subprocess tests).

The main group in syncd/cli.py registers daemon/doctor itself once integrated; until
then this adds them, exactly as the integrator will (``cli.add_command``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from syncd import cli as _cli
from syncd.cli_daemon import daemon_command, doctor_command

for command in (daemon_command, doctor_command):
    if command.name not in _cli.cli.commands:
        _cli.cli.add_command(command)

if __name__ == "__main__":
    _cli.main()
